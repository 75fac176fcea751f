"""run_pool: work shared out over sessions, results in the items' order, the first error raised."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils._pool import run_pool  # noqa: E402


def test_results_in_item_order_and_every_session_works():
    seen = {}

    def work(session, item):
        seen.setdefault(session, []).append(item)
        time.sleep(0.01 * (item % 3))  # finish out of order
        return item * 10

    assert run_pool(["a", "b", "c"], list(range(12)), work) == [i * 10 for i in range(12)]
    assert sorted(x for items in seen.values() for x in items) == list(range(12))
    assert len(seen) == 3


def test_one_session_runs_in_the_callers_thread():
    threads = set()
    run_pool(["only"], [1, 2], lambda s, i: threads.add(threading.current_thread()))
    assert threads == {threading.current_thread()}


def test_first_error_is_raised_and_stops_new_items():
    started = []

    def work(session, item):
        started.append(item)
        if item == 0:
            raise RuntimeError("boom on 0")
        time.sleep(0.05)
        return item

    with pytest.raises(RuntimeError, match="boom on 0"):
        run_pool(["a", "b"], list(range(20)), work)
    assert len(started) < 20


def test_no_items():
    assert run_pool(["a", "b"], [], lambda s, i: i) == []

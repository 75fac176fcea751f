"""agbotkit.dr.health_mismatches: what a health answer says differently from what is expected."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("health", ROOT / "plugins" / "filter" / "health.py")
health = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health)

BODY = {"status": "ok", "state": "trading", "database": {"host": "127.0.0.1", "port": "40001", "name": "ag_botkit"}}


def test_as_expected_is_empty():
    assert health.health_mismatches(BODY, {"database.host": "127.0.0.1", "database.port": 40001}) == []


def test_each_difference_and_missing_path_is_named():
    got = health.health_mismatches(BODY, {"database.port": "5432", "state": "halted", "database.region": "x"})
    assert got == ["database.port is 40001, expected 5432", "database.region is missing from the answer (expected x)",
                   "state is trading, expected halted"]
    assert health.health_mismatches(None, {"status": "ok"}) == ["status is missing from the answer (expected ok)"]

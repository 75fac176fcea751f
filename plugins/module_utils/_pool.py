# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Work shared out over database sessions: each session, in a thread of its own, takes the next item.

Used by the manifest collector (tables read in one snapshot), db_integrity's amcheck and db_load's
ANALYZE. Pure Python, no psycopg: sessions are whatever the caller's work function uses.
"""

from __future__ import annotations

import queue
import threading


def run_pool(sessions: list, items: list, work) -> list:
    """Call work(session, item) for every item, in the items' order, on all sessions at once.

    Returns the results in the items' order. The first exception stops the sessions from taking new
    items and is raised here, in the caller's thread. With one session, nothing runs in a thread."""
    todo: queue.Queue = queue.Queue()
    for index, item in enumerate(items):
        todo.put((index, item))
    results: list = [None] * len(items)
    errors: list = []

    def loop(session):
        while not errors:
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = work(session, item)
            except Exception as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
                errors.append(exc)
                return

    if len(sessions) == 1:
        loop(sessions[0])
    else:
        threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results

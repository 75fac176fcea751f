# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
from collections.abc import Mapping

from ansible_collections.agbotkit.dr.plugins.module_utils._backup import (
    backup_id_problem as _backup_id_problem,
    backup_id_time,
    newest_first,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._restore import live_verdict


def _group(keys, prefix):
    prefix = prefix.rstrip("/") + "/"
    groups = {}
    for key in keys or []:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if "/" not in rest:
            continue
        bid, path = rest.split("/", 1)
        groups.setdefault(bid, []).append((key, path))
    return groups


def backup_id_problem(bid):
    return _backup_id_problem(bid) or ""


def backup_ids(keys, prefix, complete_only=True):
    groups = _group(keys, prefix)
    ids = [b for b, files in groups.items() if not complete_only or any(p == "manifest.json" for _k, p in files)]
    return newest_first(ids)


def backup_retention(keys, prefix, keep=7, days=30, now=None):
    groups = _group(keys, prefix)
    complete = set(backup_ids(keys, prefix))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if isinstance(now, str):
        now = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
    newest = set(newest_first(complete)[: int(keep)])
    cutoff = now - datetime.timedelta(days=int(days))
    deleted, kept, doomed, ignored = [], [], [], []
    for bid in newest_first(groups) + sorted(b for b in groups if backup_id_time(b) is None):
        when = backup_id_time(bid)
        if when is None:
            ignored.append(bid)
            continue
        if when < cutoff and bid not in newest:
            deleted.append(bid)
            # the manifest first: a backup whose deletion is interrupted no longer looks complete
            doomed += sorted((k for k, _p in groups[bid]), key=lambda k: (not k.endswith("/manifest.json"), k))
        else:
            kept.append(bid)
    return {"objects": doomed, "kept": kept, "deleted": deleted, "ignored": ignored}


def backup_before(keys, prefix, before=""):
    """Newest complete backup id whose id time is at or before `before` ('' when there is none)."""
    limit = None
    if before:
        limit = datetime.datetime.fromisoformat(str(before).replace("Z", "+00:00"))
        if limit.tzinfo is None:
            limit = limit.replace(tzinfo=datetime.timezone.utc)
    for bid in backup_ids(keys, prefix):
        when = backup_id_time(bid)
        if when is not None and (limit is None or when <= limit):
            return bid
    return ""


def checksum_mismatches(stat_results, artifacts, item_key="__db_restore_item"):
    """Names of artifacts whose sha256 differs from the manifest's.

    stat_results: either a dict {name: sha256 of the local file} (s3_transfer's ``sha256`` return), checked for every
    artifact of the manifest (one missing from it is a mismatch), or stat loop results (their ``item_key`` and
    ``stat.checksum``).
    """
    if isinstance(stat_results, Mapping):
        return [name for name in sorted(artifacts or {})
                if not (artifacts[name] or {}).get("sha256") or stat_results.get(name) != artifacts[name]["sha256"]]
    bad = []
    for res in stat_results or []:
        name = res.get(item_key)
        want = (artifacts.get(name) or {}).get("sha256")
        if (res.get("stat") or {}).get("checksum") != want:
            bad.append(name)
    return bad


def restore_verdict(integrity, backup_id, live_db, comment=None):
    """Whether the live database already holds the backup (see module_utils/_restore.py live_verdict)."""
    return live_verdict(backup_id, live_db, comment, integrity)


class FilterModule:
    def filters(self):
        return {"backup_ids": backup_ids, "backup_retention": backup_retention, "backup_id_problem": backup_id_problem,
                "backup_before": backup_before, "restore_verdict": restore_verdict,
                "checksum_mismatches": checksum_mismatches}

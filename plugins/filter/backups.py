# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: backup_ids
short_description: Backup ids found under a prefix of S3 keys, newest first
version_added: 0.1.0
description:
  - From keys like C(database/20261125T120000Z/dump/toc.dat) returns the ids (the first folder below the prefix),
    newest first. Only ids that hold a C(manifest.json) count as complete backups unless O(complete_only=false).
  - The same file provides C(agbotkit.dr.backup_retention) - given the keys, O(prefix), C(keep) and C(days), it
    returns C({keys, kept, deleted}) - the keys of backups older than C(days) that are not among the newest C(keep).
    Backups without a manifest (incomplete uploads) older than C(days) are deleted too.
  - And C(agbotkit.dr.backup_before) - given the keys, O(prefix) and C(before) (an ISO 8601 time, naive = UTC;
    empty = no limit) - returns the newest complete backup id whose time is at or before C(before), or an empty
    string. The region failover verifies a restored database against that backup's manifest.
options:
  _input:
    description: S3 keys (the C(s3_keys) of amazon.aws.s3_object with C(mode=list)).
    type: list
    elements: str
    required: true
  prefix:
    description: Prefix the backups live under, without the trailing slash.
    type: str
    required: true
  complete_only:
    description: Only ids with a manifest.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Latest complete backup
  ansible.builtin.set_fact:
    latest: "{{ (listing.s3_keys | agbotkit.dr.backup_ids(prefix='database')) | first }}"
"""

RETURN = r"""
_value:
  description: Backup ids, newest first.
  type: list
  elements: str
"""

import datetime

ID_FORMAT = "%Y%m%dT%H%M%SZ"


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


def _id_time(bid):
    try:
        return datetime.datetime.strptime(bid[:16], ID_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def backup_ids(keys, prefix, complete_only=True):
    groups = _group(keys, prefix)
    ids = [b for b, files in groups.items() if not complete_only or any(p == "manifest.json" for _k, p in files)]
    return sorted(ids, reverse=True)


def backup_retention(keys, prefix, keep=7, days=30, now=None):
    groups = _group(keys, prefix)
    complete = set(backup_ids(keys, prefix))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if isinstance(now, str):
        now = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
    newest = set(sorted(complete, reverse=True)[: int(keep)])
    cutoff = now - datetime.timedelta(days=int(days))
    deleted, kept, doomed = [], [], []
    for bid in sorted(groups, reverse=True):
        when = _id_time(bid)
        old = when is not None and when < cutoff
        if old and bid not in newest:
            deleted.append(bid)
            doomed += [k for k, _p in groups[bid]]
        else:
            kept.append(bid)
    return {"objects": sorted(doomed), "kept": kept, "deleted": deleted}


def backup_before(keys, prefix, before=""):
    """Newest complete backup id whose id time is at or before `before` ('' when there is none)."""
    limit = None
    if before:
        limit = datetime.datetime.fromisoformat(str(before).replace("Z", "+00:00"))
        if limit.tzinfo is None:
            limit = limit.replace(tzinfo=datetime.timezone.utc)
    for bid in backup_ids(keys, prefix):
        when = _id_time(bid)
        if when is not None and (limit is None or when <= limit):
            return bid
    return ""


def checksum_mismatches(stat_results, artifacts, item_key="__db_restore_item"):
    """Names of artifacts whose stat sha256 differs from the manifest's (stat loop results in, names out)."""
    bad = []
    for res in stat_results or []:
        name = res.get(item_key)
        want = (artifacts.get(name) or {}).get("sha256")
        if (res.get("stat") or {}).get("checksum") != want:
            bad.append(name)
    return bad


class FilterModule:
    def filters(self):
        return {"backup_ids": backup_ids, "backup_retention": backup_retention, "backup_before": backup_before,
                "checksum_mismatches": checksum_mismatches}

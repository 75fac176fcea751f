# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: archive_rpo
short_description: The RPO a PostgreSQL server's WAL archiving gives right now, from pg_stat_archiver
version_added: 0.3.0
description:
  - Given a row of C(pg_stat_archiver) with C(archive_mode) added, the time now and the RPO objective in seconds,
    returns C({ok, seconds, failing, last_archived_time, last_failed_time, message}). The exposure is the time since
    the last segment reached the archive; when the last failure is newer than the last success, archiving is
    failing and the check fails whatever the age, saying what to do.
  - The same file provides C(agbotkit.dr.backup_age) - given a list of backups with a C(stop) time (the C(backups) of
    M(agbotkit.dr.pgbackrest)), the time now and the objective, returns C({ok, seconds, newest, message}).
options:
  _input:
    description: The pg_stat_archiver row with archive_mode.
    type: dict
    required: true
  now:
    description: The time now (ISO 8601 or epoch seconds).
    type: raw
    required: true
  objective:
    description: The RPO objective in seconds.
    type: float
    required: true
"""

EXAMPLES = r"""
- name: WAL archiving within the objective
  ansible.builtin.set_fact:
    rpo: "{{ archiver_row | agbotkit.dr.archive_rpo(now(utc=true).timestamp(), 3600) }}"
"""

RETURN = r"""
_value:
  description: The verdict, the seconds of WAL at risk and a message that says what to do.
  type: dict
"""

from ansible_collections.agbotkit.dr.plugins.module_utils._pgbackrest import (  # noqa: E402
    archive_rpo, iso, parse_time)


def backup_age(backups, now, objective):
    good = [b for b in (backups or []) if not b.get("error")]
    if not good:
        return {"ok": False, "seconds": None, "newest": None,
                "message": "no pgBackRest backup: take one (playbooks/pgbackrest.yml -e pgbackrest_backup_type=full)"}
    newest = max(good, key=lambda b: parse_time(b["stop"]))
    age = round((parse_time(now) - parse_time(newest["stop"])).total_seconds(), 1)
    ok = age <= float(objective)
    msg = ("newest backup %s finished %s, %.0f s ago (objective %.0f s)"
           % (newest["label"], iso(parse_time(newest["stop"])), age, float(objective)))
    if not ok:
        msg += (": the backup schedule is not running; run playbooks/pgbackrest.yml -e pgbackrest_backup_type=incr "
                "and check the scheduler")
    return {"ok": ok, "seconds": age, "newest": newest["label"], "message": msg}


class FilterModule:
    def filters(self):
        return {"archive_rpo": archive_rpo, "backup_age": backup_age}

# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

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

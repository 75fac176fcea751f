# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Markers that make restores and swaps resumable.

A database created by db_load carries a comment ``agbotkit.dr restore backup=<id> status=<s>``;
db_swap keeps it (a rename keeps comments), so a live database that came from backup <id>
says so, and a second run of the playbook knows the step is done. A database without our
marker is never dropped or renamed by a restore step.
"""

from __future__ import annotations

import re

MARKER_RE = re.compile(r"^agbotkit\.dr (?P<kind>restore|quarantine) backup=(?P<backup>\S+) status=(?P<status>\S+)")


def marker(kind: str, backup_id: str, status: str, extra: str = "") -> str:
    text = "agbotkit.dr %s backup=%s status=%s" % (kind, backup_id, status)
    return text + (" " + extra if extra else "")


def parse_marker(comment: str | None) -> dict | None:
    if not comment:
        return None
    m = MARKER_RE.match(comment)
    return m.groupdict() if m else None


DB_COMMENT_SQL = (
    "SELECT d.datname AS name, pg_catalog.shobj_description(d.oid, 'pg_database') AS comment, "
    "d.datallowconn AS allow_connections FROM pg_catalog.pg_database d WHERE d.datname = %s"
)


def db_state(session, name: str) -> dict | None:
    """None if the database does not exist, else {name, comment, marker, allow_connections}."""
    row = session.one(DB_COMMENT_SQL, (name,))
    if row is None:
        return None
    row["marker"] = parse_marker(row.get("comment"))
    return row

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


# --- decisions (pure; unit-tested in tests/unit/test_restore_decisions.py) ----------------------------


def is_complete_restore(mark: dict | None, backup_id: str) -> bool:
    return bool(mark and mark["kind"] == "restore" and mark["backup"] == backup_id and mark["status"] == "complete")


def live_verdict(backup_id: str, live_db: str, comment: str | None, integrity: dict | None) -> dict:
    """Whether the live database already holds backup `backup_id`, so that a restore has nothing to do.

    The marker only says a run got that far; the data decides. `integrity` is db_integrity's return with
    superset: true against the backup's manifest. In sync only when the marker names a complete restore of this
    backup AND the check compared at least one table AND found nothing missing or changed (rows written since
    are fine). Returns {in_sync, message, differences, rows_since, compared}."""
    integrity = integrity or {}
    mark = parse_marker(comment)
    compared = integrity.get("compared") or {}
    differences = [m.get("message", str(m)) for m in integrity.get("mismatches") or []]
    since = integrity.get("rows_since") or {}
    out = {"in_sync": False, "differences": differences, "rows_since": since, "compared": compared,
           "marker": mark}
    since_text = ("; a new restore would lose %d row(s) written since the backup (%s)" % (
        sum(since.values()), ", ".join("%s: %s" % kv for kv in sorted(since.items())))) if since else ""
    checked = integrity.get("mismatches") is not None and not integrity.get("failed") and compared.get("tables")
    if integrity.get("failed") and integrity.get("mismatches") is None:
        out["message"] = "Live database %s could not be checked against backup %s: %s. Restoring." % (
            live_db, backup_id, integrity.get("msg", "unknown error"))
    elif not checked:
        out["message"] = ("Live database %s was not compared with backup %s (nothing was checked), so it is not "
                          "taken as restored. Restoring." % (live_db, backup_id))
    elif differences:
        out["message"] = ("Live database %s differs from backup %s%s: %s%s. Restoring." % (
            live_db, backup_id, " although it was restored from it earlier" if is_complete_restore(mark, backup_id)
            else "", "; ".join(differences), since_text))
    elif not is_complete_restore(mark, backup_id):
        out["message"] = ("Live database %s matches backup %s but does not carry the marker of a complete restore "
                          "of it; restoring as asked." % (live_db, backup_id))
    else:
        out["in_sync"] = True
        out["message"] = ("Live database %s still holds everything backup %s holds (%d tables, %d rows; row "
                          "checksums of %d tables%s compared)%s: nothing to do." % (
                              live_db, backup_id, compared.get("tables", 0), compared.get("rows", 0),
                              compared.get("checksum_tables", 0),
                              ", amcheck of %d relations" % compared["amcheck_relations"]
                              if compared.get("amcheck_relations") else "",
                              "; %d row(s) written since are kept" % sum(since.values()) if since else ""))
    return out


def load_target_action(state: dict | None, backup_id: str) -> tuple[str, str | None]:
    """What db_load may do with its target database: ("create", None), ("done", None) when it is a complete restore
    of this backup, ("replace", None) when it is this backup's own unfinished restore (marker status=loading), or
    ("refuse", why) for anything else - a database without our marker, a quarantined one, a restore of another
    backup, whatever its status."""
    if state is None:
        return "create", None
    mark = state.get("marker")
    if mark is None:
        return "refuse", ("Database %s exists and carries no agbotkit.dr restore marker, so it is left untouched. If "
                          "it is an empty leftover of an interrupted restore, drop it and re-run; otherwise choose "
                          "another target_db" % state["name"])
    if mark["kind"] == "restore" and mark["backup"] == backup_id:
        if mark["status"] == "complete":
            return "done", None
        if mark["status"] == "loading":
            return "replace", None
    return "refuse", ("Database %s is not this backup's unfinished restore (its marker: %r), so it is left untouched: "
                      "db_load only replaces a database it created for backup %s and did not finish. Choose another "
                      "target_db, or drop %s yourself once you know it is not needed"
                      % (state["name"], state.get("comment"), backup_id, state["name"]))


def verification_problem(verification: dict | None, restored_db: str, backup_id: str) -> str | None:
    """Why a swap must not happen on the strength of `verification` (db_integrity's return recorded by this run),
    or None when it proves restored_db matches backup_id's manifest."""
    v = verification or {}
    if not v or v.get("skipped"):
        return ("no verification of %s was recorded in this run (was the verify step skipped, e.g. with --tags or "
                "--skip-tags?)" % restored_db)
    if v.get("failed") or v.get("ok") is not True:
        return "the verification of %s did not pass: %s" % (
            restored_db, v.get("msg") or "; ".join(m.get("message", "") for m in v.get("mismatches") or []))
    if v.get("database") != restored_db:
        return "the recorded verification is of database %s, not %s" % (v.get("database"), restored_db)
    if v.get("backup_id") != backup_id:
        return "the recorded verification is against backup %s, not %s" % (v.get("backup_id"), backup_id)
    if not (v.get("compared") or {}).get("tables"):
        return "the recorded verification of %s compared no table" % restored_db
    return None


REOPEN_SQL = (
    "SELECT d.datname AS name FROM pg_catalog.pg_database d WHERE NOT d.datallowconn AND NOT d.datistemplate "
    "AND (d.datname = ANY(%s) OR pg_catalog.shobj_description(d.oid, 'pg_database') LIKE 'agbotkit.dr %%')"
)


def reopen_databases(session, names: list[str], quote) -> list[str]:
    """Let connections in again to the named databases and to every database carrying our marker that refuses
    them (a swap killed after it closed them); returns the names reopened."""
    reopened = []
    for row in session.query(REOPEN_SQL, (list(names),)):
        session.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % quote(row["name"]))
        reopened.append(row["name"])
    return reopened

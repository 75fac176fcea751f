#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_load
short_description: Restore a backup taken by agbotkit.dr.db_dump into a new database, never the live one
version_added: 0.1.0
description:
  - Checks every artifact of the backup against the sha256 and size in its manifest before anything else, then
    creates O(target_db), restores the dump into it with parallel C(pg_restore), and runs C(ANALYZE) (on O(jobs)
    connections; each table that is not a partition, and each partitioned root, which covers its partitions).
  - Where the manifest lists the C(timescaledb) extension, the server must offer the same extension version
    (otherwise the module fails before creating anything); the extension is created first and
    C(timescaledb_pre_restore()) / C(timescaledb_post_restore()) wrap the restore.
  - The new database carries a marker comment (C(agbotkit.dr restore backup=ID status=loading|complete)). A
    re-run after success changes nothing; a re-run after a failure (the server going away mid-restore, say)
    drops the incomplete database it created for the same backup (marker C(status=loading)) and starts again. Any
    other database of that name - without our marker, quarantined by M(agbotkit.dr.db_swap), or a restore of
    another backup - is never touched; the module fails instead, saying what the database carries.
  - The restore runs in two C(pg_restore) calls. The first creates the schema (C(--section=pre-data)). Then
    autovacuum is switched off on every new table (C(autovacuum_enabled=false), also for its TOAST table) unless
    the backup set that option itself, the table belongs to an extension, or this role may not alter it; and
    the second call loads the data and builds the indexes and constraints
    (C(--section=data --section=post-data), O(jobs) workers). After C(ANALYZE) the option is reset on exactly
    those tables. Without this, autovacuum starts on a table as soon as its data is in, and the index build that
    follows waits C(deadlock_timeout) for it to be cancelled, table after table, while both burn CPU (seen on
    the lab as 4 to 6 seconds added to a 10-second restore).
  - C(pg_restore) runs through community.general's CmdRunner; the password reaches it through C(PGPASSWORD).
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.postgres
options:
  backup_path:
    description: Folder of the backup (holds C(manifest.json) and C(dump/)), as written by M(agbotkit.dr.db_dump).
    type: path
    required: true
  target_db:
    description: Name of the database to create and restore into. Must not be the live database.
    type: str
    required: true
  jobs:
    description: Parallel C(pg_restore) workers.
    type: int
    default: 2
  pg_bin:
    description: Folder holding C(pg_restore) of the server's major version; PATH is searched after it.
    type: path
  login_db:
    description: Maintenance database to connect to for C(CREATE DATABASE) (not the target).
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Verifies the artifacts' sha256 and reports whether the restore would run; creates nothing.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.db_dump
  - module: agbotkit.dr.db_integrity
  - module: agbotkit.dr.db_swap
"""

EXAMPLES = r"""
- name: Restore the chosen backup beside the live database
  agbotkit.dr.db_load:
    login_host: 127.0.0.1
    login_user: agbot
    login_password: "{{ dr_db_password }}"
    backup_path: /var/backups/ag-botkit/20261125T120000Z
    target_db: ag_botkit_restore_20261125T130500Z
    jobs: 4
"""

RETURN = r"""
target_db:
  description: The database restored into.
  returned: always
  type: str
backup_id:
  description: Identifier of the restored backup.
  returned: always
  type: str
artifact_problems:
  description: Artifacts whose sha256 or size does not match the manifest (the module fails when any).
  returned: always
  type: list
  elements: dict
timescaledb:
  description: Extension version restored with pre/post restore steps, or null.
  returned: always
  type: str
duration:
  description: Seconds spent restoring (pg_restore and ANALYZE).
  returned: when restored
  type: float
timings:
  description: Seconds per step of the restore - C(create), C(pre_data), C(load) (data, indexes, constraints),
    C(analyze), C(mark).
  returned: when restored
  type: dict
  sample: {"create": 0.12, "pre_data": 0.35, "load": 10.4, "analyze": 0.7, "mark": 0.02}
autovacuum_paused:
  description: Tables whose autovacuum was off during the data load and index builds, and was reset afterwards.
  returned: when restored
  type: list
  elements: str
queries:
  description: SQL the module ran.
  returned: always
  type: list
  elements: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, ManifestError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (
    PgConnector,
    postgres_argument_spec,
    quote_ident,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._pool import run_pool
from ansible_collections.agbotkit.dr.plugins.module_utils._pgtools import (
    ToolError,
    conn_args,
    dbname_conninfo,
    find_tool,
    pg_env,
    pg_restore_runner,
    verify_artifacts,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._restore import db_state, load_target_action, marker


# Ordinary tables and partitions (relkind r) outside the system schemas whose reloptions do not set autovacuum
# themselves, already quoted for SQL (regclass output). Partitioned parents have no storage and take no option.
# Tables that belong to an extension (TimescaleDB's catalog, PostGIS's spatial_ref_sys) and tables this role
# may not alter are left alone.
PAUSABLE_TABLES_SQL = (
    "SELECT c.oid::pg_catalog.regclass::text AS name FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' "
    "AND pg_catalog.pg_has_role(c.relowner, 'USAGE') "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
    "AND d.objid = c.oid AND d.deptype = 'e') "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(coalesce(c.reloptions, '{}') || coalesce(t.reloptions, '{}')) o "
    "WHERE o LIKE 'autovacuum_enabled=%') ORDER BY 1"
)


# What ANALYZE covers, as statements that do not overlap: every table that is not a partition, and every
# partitioned root (ANALYZE of a root also analyzes all its partitions), largest first.
ANALYZE_TARGETS_SQL = (
    "SELECT c.oid::pg_catalog.regclass::text AS name, (SELECT coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0) "
    "FROM pg_catalog.pg_partition_tree(c.oid) t) AS bytes FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'm', 'p') AND NOT c.relispartition "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' ORDER BY 2 DESC, 1"
)


def analyze(connector, session, jobs: int) -> None:
    """ANALYZE the restored tables on up to `jobs` connections: each table that is not a partition and each
    partitioned root (which analyzes its partitions), as a database-wide ANALYZE would."""
    names = [row["name"] for row in session.query(ANALYZE_TARGETS_SQL)]
    extra = []
    try:
        for _extra in range(max(0, min(jobs, len(names)) - 1)):
            extra.append(connector.session())
        run_pool([session, *extra], names, lambda s, name: s.execute("ANALYZE %s" % name))
    finally:
        for x in extra:
            x.close()


def load_manifest(path: str) -> dict:
    mpath = os.path.join(path, "manifest.json")
    if not os.path.isfile(mpath):
        raise ManifestError("Failed to read manifest %s: it does not exist. A backup without a manifest cannot be "
                            "verified; choose another backup (db_restore_backup_id) or take a new one" % mpath)
    try:
        with open(mpath) as fh:
            manifest = json.load(fh)
    except ValueError as exc:
        raise ManifestError("Failed to parse manifest %s: %s; the object is damaged, choose another backup"
                            % (mpath, exc)) from exc
    if not manifest.get("artifacts") or not manifest.get("backup", {}).get("id"):
        raise ManifestError("Manifest %s lists no artifacts or backup id: it was not written by "
                            "agbotkit.dr.db_dump" % mpath)
    return manifest


def run(module, out: dict) -> None:
    p = module.params
    manifest = load_manifest(p["backup_path"])
    backup_id = manifest["backup"]["id"]
    out["backup_id"] = backup_id
    problems = verify_artifacts(p["backup_path"], manifest["artifacts"])
    out["artifact_problems"] = problems
    if problems:
        raise AgbotDrError(
            "Backup %s failed its sha256 check, nothing was restored: %s. Fetch it again or choose another "
            "backup (db_restore_backup_id)" % (backup_id, "; ".join(x["message"] for x in problems)))
    if p["target_db"] == manifest.get("database"):
        raise AgbotDrError("target_db %s is the database the backup was taken from; restore into a new "
                           "database and swap it in with agbotkit.dr.db_swap" % p["target_db"])
    connector = PgConnector(p, application_name="agbotkit.dr.db_load")
    out["queries"] = connector.recorder.queries
    admin = connector.session()
    try:
        # markers must survive a crash whatever the server's synchronous_commit says
        admin.execute("SET synchronous_commit TO on")
        state = db_state(admin, p["target_db"])
        action, why = load_target_action(state, backup_id)
        if action == "refuse":
            raise AgbotDrError(why)
        if action == "done":
            return
        ts_version = manifest.get("extensions", {}).get("timescaledb")
        out["timescaledb"] = ts_version
        if ts_version:
            avail = admin.query("SELECT version FROM pg_catalog.pg_available_extension_versions "
                                "WHERE name = 'timescaledb'")
            versions = sorted(r["version"] for r in avail)
            if ts_version not in versions:
                raise AgbotDrError(
                    "The backup needs timescaledb %s but this server offers %s; install the same extension "
                    "version before restoring" % (ts_version, ", ".join(versions) or "none"))
        if module.check_mode:
            out["changed"] = True
            return
        started = time.monotonic()
        target = quote_ident(p["target_db"])
        clock = [started]
        timings = {}

        def lap():
            now = time.monotonic()
            seconds, clock[0] = round(now - clock[0], 3), now
            return seconds

        if action == "replace":  # this backup's own unfinished restore (marker status=loading)
            admin.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()", (p["target_db"],))
            admin.execute("DROP DATABASE %s" % target)
        admin.execute("CREATE DATABASE %s" % target)
        admin.execute("COMMENT ON DATABASE %s IS %%s" % target, (marker("restore", backup_id, "loading"),))
    finally:
        admin.close()
    out["changed"] = True
    tparams = dict(p, login_db=p["target_db"])
    tconn = PgConnector(tparams, recorder=connector.recorder, application_name="agbotkit.dr.db_load")
    if ts_version:
        s = tconn.session()
        try:
            s.execute("CREATE EXTENSION IF NOT EXISTS timescaledb VERSION %s" % quote_ident(ts_version))
            s.execute("SELECT timescaledb_pre_restore()")
        finally:
            s.close()
    runner = pg_restore_runner(module, find_tool(module, "pg_restore", p["pg_bin"]))

    def restore(sections, jobs):
        # environ_update belongs to the context: CmdRunner's run() only takes argument values
        with runner("host port user no_password dbname jobs section no_owner exit_on_error source",
                    environ_update=pg_env(p)) as ctx:
            rc, _out, err = ctx.run(dbname=dbname_conninfo(p["target_db"]), jobs=jobs, section=sections,
                                    no_password=True,
                                    source=[os.path.join(p["backup_path"], "dump")], **conn_args(p))
        if rc != 0:
            raise ToolError("Failed to restore backup %s into %s: pg_restore (%s) exited %s: %s. The live "
                            "database is untouched; re-run to start the restore again" % (
                                backup_id, p["target_db"], " + ".join(sections), rc, err.strip()[-2000:]))

    timings["create"] = lap()
    restore(["pre-data"], 1)
    timings["pre_data"] = lap()
    s = tconn.session()
    try:
        paused = [r["name"] for r in s.query(PAUSABLE_TABLES_SQL)]
        for name in paused:
            s.execute("ALTER TABLE %s SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)" % name)
    finally:
        s.close()
    restore(["data", "post-data"], p["jobs"])
    timings["load"] = lap()
    s = tconn.session()
    try:
        if ts_version:
            s.execute("SELECT timescaledb_post_restore()")
        analyze(tconn, s, p["jobs"])
        timings["analyze"] = lap()
        for name in paused:
            s.execute("ALTER TABLE %s RESET (autovacuum_enabled, toast.autovacuum_enabled)" % name)
    finally:
        s.close()
    out["autovacuum_paused"] = paused
    admin = connector.session()
    try:
        admin.execute("SET synchronous_commit TO on")
        admin.execute("COMMENT ON DATABASE %s IS %%s" % target, (marker("restore", backup_id, "complete"),))
    finally:
        admin.close()
    timings["mark"] = lap()
    out["duration"] = round(time.monotonic() - started, 3)
    out["timings"] = timings


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        backup_path=dict(type="path", required=True),
        target_db=dict(type="str", required=True),
        jobs=dict(type="int", default=2),
        pg_bin=dict(type="path"),
        login_db=dict(type="str", default="postgres"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    run_module(module, run, result=dict(changed=False, target_db=p["target_db"], backup_id=None, artifact_problems=[],
                                        timescaledb=None, queries=[]))


if __name__ == "__main__":
    main()

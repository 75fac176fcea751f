#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_integrity
short_description: Prove a PostgreSQL database is intact - amcheck, hypertables, and its manifest
version_added: 0.1.0
description:
  - "Checks a database three ways and returns a per-table report, the list of mismatches and the SQL it ran:"
  - "Corruption (O(amcheck=true)): C(verify_heapam()) on every table and materialized view (TOAST included) and
    C(bt_index_check()) on every valid B-tree index, outside the system catalogs, on O(parallel) connections."
  - "Hypertables, where the C(timescaledb) extension is installed: every hypertable of
    C(timescaledb_information.hypertables) is listed, and every chunk of C(timescaledb_information.chunks) must
    exist and be readable."
  - "Given a manifest of M(agbotkit.dr.db_manifest) (O(manifest) or O(manifest_path)): every table present with
    the same row count, row checksum (O(checksums)) and C(max(time)); the same schema hash; every extension of the
    manifest at the same version; every hypertable still a hypertable. Tables the manifest does not name are
    reported as extra."
  - Fails listing every mismatch unless O(fail_on_mismatch=false).
  - "Why amcheck through SQL and not the C(pg_amcheck) binary: it needs nothing on the host that runs the module
    (which for RDS is not the database host) and no client binary matching the server's major version; results
    come back per relation, structured, and the statements appear in RV(queries). Parallelism comes from
    O(parallel) connections, as pg_amcheck's C(--jobs) would."
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.postgres
options:
  manifest:
    description:
      - A manifest as returned by M(agbotkit.dr.db_manifest) (its RV(agbotkit.dr.db_manifest#module:manifest)).
    type: dict
  manifest_path:
    description:
      - Path of a manifest JSON file written by M(agbotkit.dr.db_manifest), on the host that runs the module.
    type: path
  tables:
    description:
      - Check only these tables (V(schema.table) or a bare name in V(public)). The schema hash is then not compared,
        since it covers all of the manifest's tables.
      - Default is every table of the manifest plus every user table of the database.
    type: list
    elements: str
  checksums:
    description:
      - Compare row checksums where the manifest has them. V(false) compares counts and C(max(time)) only, faster.
    type: bool
    default: true
  parallel:
    description:
      - Connections used at the same time (tables for the manifest part share one snapshot).
    type: int
    default: 2
  amcheck:
    description:
      - Run the amcheck corruption checks.
    type: bool
    default: true
  amcheck_install:
    description:
      - Run C(CREATE EXTENSION IF NOT EXISTS amcheck) when it is missing (this is the only change the module can
        make, reported as RV(ignore:changed)). Without it a missing extension fails the module, saying so.
    type: bool
    default: false
  heapallindexed:
    description:
      - Pass C(heapallindexed => true) to C(bt_index_check()), which also proves every heap tuple has its index
        entry. Much slower on large tables.
    type: bool
    default: false
  hypertables:
    description:
      - Check hypertables and their chunks when the C(timescaledb) extension is installed.
    type: bool
    default: true
  fail_on_mismatch:
    description:
      - Fail when any mismatch or corruption is found. With V(false) the module returns RV(ok=false) and the list.
    type: bool
    default: true
  superset:
    description:
      - Check that the database still holds everything the manifest holds, allowing what was written since (a live
        database that a resumed bot writes to). Per table with a time column, only the rows at or before the
        manifest's C(max_time) (its watermark) are compared - count, checksum and C(max(time)) must match exactly -
        and the rows after it are returned as RV(rows_since). A table whose time column is updated in place
        (C(updated_at), C(modified_at), C(last_updated), C(last_modified)) must hold at least the manifest's row
        count (its changed rows cannot be told from damage, so only deletions are seen). A table without a time
        column must match exactly. Tables created since are not a mismatch.
      - Needs a manifest.
    type: bool
    default: false
    version_added: 0.2.0
attributes:
  check_mode:
    support: full
    description: Runs the same read-only checks in check mode; with O(amcheck_install) and amcheck missing, the
      extension is not created and the amcheck part is skipped with a warning.
  diff_mode:
    support: none
    description: The module returns no diff.
notes:
  - amcheck needs a superuser or a role granted C(EXECUTE) on its functions (on RDS, C(rds_superuser)).
seealso:
  - module: agbotkit.dr.db_manifest
  - name: amcheck
    description: The amcheck extension.
    link: https://www.postgresql.org/docs/current/amcheck.html
"""

EXAMPLES = r"""
- name: Verify the restored database against the backup's manifest
  agbotkit.dr.db_integrity:
    login_host: 127.0.0.1
    login_user: agbot
    login_password: "{{ db_password }}"
    login_db: "{{ restore_db }}"
    manifest_path: "{{ backup_dir }}/manifest.json"
    amcheck_install: true
    parallel: 4
  register: integrity

- name: Assess the live database without failing, to report what is damaged
  agbotkit.dr.db_integrity:
    login_db: ag_botkit
    manifest: "{{ latest_manifest }}"
    checksums: false
    fail_on_mismatch: false
  register: assess
"""

RETURN = r"""
ok:
  description: True when nothing is corrupt and nothing differs from the manifest.
  returned: always
  type: bool
  sample: false
report:
  description: Per table (V(schema.table)) what was found.
  returned: always
  type: dict
  sample:
    public.orders: {"present": true, "rows": 999, "expected_rows": 1000, "checksum_ok": false, "amcheck": "ok"}
    public.fills: {"present": false, "rows": null, "expected_rows": 50, "checksum_ok": null, "amcheck": "missing"}
mismatches:
  description: Every difference and corruption found; each one's C(kind) is one of C(missing_table),
    C(extra_table), C(rows), C(checksum), C(max_time), C(schema_hash), C(checksum_algorithm), C(extension_missing),
    C(extension_version), C(hypertable_missing), C(hypertable), C(corruption).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "rows", "table": "public.orders", "expected": 1000, "observed": 999,
            "message": "public.orders: 999 rows, manifest says 1000 (-1)"}]
amcheck:
  description: Per checked relation, its kind (V(heap) or V(btree)), table, status (V(ok), V(errors), V(skipped))
    and errors.
  returned: when amcheck ran
  type: dict
  sample: {"public.orders_pkey": {"kind": "btree", "table": "public.orders", "status": "ok", "errors": []}}
hypertables:
  description: Per hypertable its chunk count and the chunks that are missing or unreadable.
  returned: when timescaledb is installed and hypertables is true
  type: dict
  sample: {"public.metrics": {"num_chunks": 1, "chunks_checked": 1, "chunks_missing": [], "chunks_unreadable": [],
           "ok": true}}
timescaledb:
  description: Whether the timescaledb extension is installed, and its version.
  returned: always
  type: dict
  sample: {"installed": true, "version": "2.14.2"}
observed:
  description: The database as read, in the manifest format of M(agbotkit.dr.db_manifest).
  returned: always
  type: dict
elapsed_seconds:
  description: Time spent per part (manifest, amcheck, hypertables).
  returned: always
  type: dict
  sample: {"manifest": 1.2, "amcheck": 3.4, "hypertables": 0.01}
compared:
  description: What was actually compared, for reports - the number of tables compared with the manifest, the
    rows they hold by the manifest, the tables whose row checksum was compared (C(checksum_tables); 0 when checksums
    were off or not comparable), the relations amcheck checked, and whether O(superset) was used.
  returned: always
  type: dict
  sample: {"tables": 5, "rows": 12000, "checksum_tables": 5, "amcheck_relations": 14, "superset": false}
rows_since:
  description: With O(superset), per table the rows written after the manifest's newest row (only non-zero ones).
  returned: always
  type: dict
  sample: {"public.fills": 12}
database:
  description: The database checked (O(login_db)).
  returned: always
  type: str
backup_id:
  description: The C(backup.id) of the manifest checked against, when it has one.
  returned: always
  type: str
queries:
  description: The SQL the module ran.
  returned: always
  type: list
  elements: str
"""

import copy  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import (  # noqa: E402
    AgbotDrError,
    DatabaseQueryError,
    IntegrityMismatchError,
    ManifestError,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._manifest import (  # noqa: E402
    CHECKSUM_ALGORITHM,
    HYPERTABLES_SQL,
    KNOWN_CHECKSUM_ALGORITHMS,
    LIST_TABLES_SQL,
    ManifestCollector,
    comparable,
    compare,
    compare_superset,
    mismatch,
    normalize_table_name,
    parse_manifest,
    rows_since,
    validate_manifest,
    watermark_plan,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pool import run_pool  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (  # noqa: E402
    PgConnector,
    QueryRecorder,
    postgres_argument_spec,
    quote_ident,
)

AMCHECK_TARGETS_SQL = (
    "SELECT format('%s.%s', n.nspname, c.relname) AS name, format('%I.%I', n.nspname, c.relname) AS qname, "
    "CASE WHEN c.relkind = 'i' THEN 'btree' ELSE 'heap' END AS kind, "
    "CASE WHEN c.relkind = 'i' THEN (SELECT format('%s.%s', tn.nspname, t.relname) FROM pg_catalog.pg_index x "
    "JOIN pg_catalog.pg_class t ON t.oid = x.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace "
    "WHERE x.indexrelid = c.oid) ELSE format('%s.%s', n.nspname, c.relname) END AS table_name, "
    "pg_catalog.pg_relation_size(c.oid) AS bytes "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname !~ '^pg_(toast|temp)' "
    "AND (c.relkind IN ('r', 'm') OR (c.relkind = 'i' AND c.relam = "
    "(SELECT oid FROM pg_catalog.pg_am WHERE amname = 'btree') AND EXISTS (SELECT 1 FROM pg_catalog.pg_index x "
    "WHERE x.indexrelid = c.oid AND x.indisvalid AND x.indisready))) "
    "ORDER BY 1"
)

# Who holds a lock that conflicts with reading: what a scan that hit lock_timeout waited for
LOCK_HOLDERS_SQL = (
    "SELECT l.relation::pg_catalog.regclass::text AS relation, l.mode, l.pid, a.application_name, a.usename, "
    "a.state, pg_catalog.left(a.query, 200) AS query FROM pg_catalog.pg_locks l "
    "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.granted AND l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_catalog.pg_database "
    "WHERE datname = pg_catalog.current_database()) AND l.mode = 'AccessExclusiveLock' "
    "AND l.pid <> pg_catalog.pg_backend_pid() ORDER BY 1"
)
LOCK_NOT_AVAILABLE = "55P03"

CHUNKS_SQL = (
    "SELECT format('%s.%s', hypertable_schema, hypertable_name) AS hypertable, "
    "format('%s.%s', chunk_schema, chunk_name) AS chunk, format('%I.%I', chunk_schema, chunk_name) AS qname, "
    "pg_catalog.to_regclass(format('%I.%I', chunk_schema, chunk_name)) IS NOT NULL AS present "
    "FROM timescaledb_information.chunks ORDER BY 1, 2"
)
EXTENSION_SQL = (
    "SELECT extnamespace::regnamespace::text AS schema, extversion AS version FROM pg_catalog.pg_extension "
    "WHERE extname = %s"
)


def argument_spec() -> dict:
    spec = postgres_argument_spec()
    spec.update(
        manifest=dict(type="dict"),
        manifest_path=dict(type="path"),
        tables=dict(type="list", elements="str"),
        checksums=dict(type="bool", default=True),
        parallel=dict(type="int", default=2),
        amcheck=dict(type="bool", default=True),
        amcheck_install=dict(type="bool", default=False),
        heapallindexed=dict(type="bool", default=False),
        hypertables=dict(type="bool", default=True),
        fail_on_mismatch=dict(type="bool", default=True),
        superset=dict(type="bool", default=False),
    )
    return spec


def load_expected(p: dict) -> dict | None:
    try:
        if p["manifest"] is not None:
            return validate_manifest(p["manifest"], "the manifest option")
        if p["manifest_path"]:
            path = p["manifest_path"]
            if not os.path.exists(path):
                raise ManifestError("Failed to read manifest %s: no such file; the backup is incomplete or the path "
                                    "is wrong, pick another backup or re-create its manifest" % path)
            with open(path, encoding="utf-8") as f:
                return parse_manifest(f.read(), path)
    except ValueError as exc:
        raise ManifestError("Failed to read manifest: %s" % exc) from exc
    return None


class Checker:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params
        self.recorder = QueryRecorder()
        self.connector = PgConnector(self.p, self.recorder, "agbotkit.dr.db_integrity")
        self.changed = False

    # (c) manifest --------------------------------------------------------------------------
    def observe(self, session, expected: dict | None) -> tuple[dict, list[dict]]:
        p = self.p
        checksums = bool(p["checksums"] and (expected is None or expected.get("checksum_algorithm")))
        if expected is None:
            checksums = False  # nothing to compare them with
        algorithm = (expected or {}).get("checksum_algorithm") or CHECKSUM_ALGORITHM
        if algorithm not in KNOWN_CHECKSUM_ALGORITHMS:
            raise ManifestError("Failed to verify: the manifest's checksum algorithm %s is unknown to this version of "
                                "agbotkit.dr; upgrade the collection or use checksums: false" % algorithm)
        superset = bool(p["superset"] and expected is not None)
        collector = ManifestCollector(self.connector, checksums=checksums, parallel=p["parallel"], algorithm=algorithm,
                                      watermarks=watermark_plan(expected) if superset else None)
        if p["tables"] is not None:
            names = sorted({normalize_table_name(t) for t in p["tables"]})
            schema_tables = names
        elif expected is not None:
            live = [r["name"] for r in session.query(LIST_TABLES_SQL)]
            names = sorted(set(expected["tables"]) | set(live))
            schema_tables = sorted(expected["tables"])
        else:
            names, schema_tables = None, None
        observed = collector.collect(tables=names, schema_tables=schema_tables, strict=False)
        exp = copy.deepcopy(expected) if expected is not None else {"tables": {}}
        if p["tables"] is not None:
            exp["tables"] = {t: v for t, v in exp["tables"].items() if t in names}
            exp["schema_hash"] = None
        if expected is None:
            mismatches = []
        elif superset:
            mismatches = compare_superset(exp, observed, checksums=checksums)
        else:
            mismatches = compare(exp, observed, checksums=checksums)
        for name in names if p["tables"] is not None else []:
            if name not in observed["tables"] and name not in exp["tables"]:
                mismatches.append(mismatch("missing_table", "%s: table does not exist" % name, name))
        return observed, mismatches

    # (a) amcheck ---------------------------------------------------------------------------
    def ensure_amcheck(self, session) -> dict | None:
        """The amcheck extension's row (schema), installing it if allowed; None = skip amcheck (check mode)."""
        ext = session.one(EXTENSION_SQL, ("amcheck",))
        if ext is None:
            if not self.p["amcheck_install"]:
                raise DatabaseQueryError(
                    "Failed to check %s for corruption: the amcheck extension is not installed; set "
                    "amcheck_install: true (needs a superuser or rds_superuser), or amcheck: false to skip "
                    "the corruption checks" % self.connector.target)
            if self.module.check_mode:
                self.module.warn("amcheck is not installed and check mode creates nothing: corruption checks skipped")
                return None
            session.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            self.changed = True
            ext = session.one(EXTENSION_SQL, ("amcheck",))
        return ext

    def amcheck(self, session, ext: dict) -> dict:
        schema = quote_ident(ext["schema"])
        # the schema name is quoted with quote_ident(); relations are bound parameters
        heap_sql = ("SELECT blkno, offnum, attnum, msg FROM %s.verify_heapam(relation => %%s::regclass, "  # noqa: S608
                    "on_error_stop => false, check_toast => true, skip => 'none')" % schema)
        btree_sql = "SELECT %s.bt_index_check(index => %%s::regclass, heapallindexed => %%s)" % schema
        targets = session.query(AMCHECK_TARGETS_SQL)
        targets.sort(key=lambda t: (-(t["bytes"] or 0), t["name"]))

        def check_one(s, t) -> dict:
            entry = {"kind": t["kind"], "table": t["table_name"], "status": "ok", "errors": []}
            try:
                if t["kind"] == "heap":
                    rows = s.query(heap_sql, (t["qname"],))
                    entry["errors"] = ["block %s offset %s attribute %s: %s" % (
                        r["blkno"], r["offnum"], r["attnum"], r["msg"]) for r in rows]
                else:
                    s.query(btree_sql, (t["qname"], self.p["heapallindexed"]))
            except DatabaseQueryError as exc:
                if exc.details.get("sqlstate") == "42P01":
                    entry["status"] = "skipped"
                    entry["errors"] = ["dropped while the check ran"]
                    return entry
                entry["errors"] = [str(exc)]
            if entry["errors"]:
                entry["status"] = "errors"
            return entry

        n = max(1, min(self.p["parallel"], len(targets)))
        sessions = [session] + [self.connector.session() for _extra in range(n - 1)]
        try:
            entries = run_pool(sessions, targets, check_one)
        finally:
            for s in sessions[1:]:
                s.close()
        return {t["name"]: entries[i] for i, t in sorted(enumerate(targets), key=lambda pair: pair[1]["name"])}

    # (b) hypertables -----------------------------------------------------------------------
    def hypertables(self, session) -> tuple[dict, list[dict]]:
        out: dict = {}
        mismatches: list[dict] = []
        for h in session.query(HYPERTABLES_SQL):
            out[h["name"]] = {"num_chunks": h["num_chunks"], "chunks_checked": 0, "chunks_missing": [],
                              "chunks_unreadable": [], "ok": True}
        for c in session.query(CHUNKS_SQL):
            h = out.setdefault(c["hypertable"], {"num_chunks": None, "chunks_checked": 0, "chunks_missing": [],
                                                 "chunks_unreadable": [], "ok": True})
            h["chunks_checked"] += 1
            if not c["present"]:
                h["chunks_missing"].append(c["chunk"])
                continue
            try:
                # qname comes from format('%I.%I') in CHUNKS_SQL: quoted by the server
                session.query("SELECT 1 AS readable FROM %s LIMIT 1" % c["qname"])  # noqa: S608
            except DatabaseQueryError as exc:
                h["chunks_unreadable"].append("%s: %s" % (c["chunk"], exc))
        for name, h in out.items():
            if h["chunks_missing"]:
                mismatches.append(mismatch("hypertable", "%s: chunk(s) missing: %s" % (
                    name, ", ".join(h["chunks_missing"])), name))
            if h["chunks_unreadable"]:
                mismatches.append(mismatch("hypertable", "%s: chunk(s) unreadable: %s" % (
                    name, "; ".join(h["chunks_unreadable"])), name))
            if h["num_chunks"] is not None and h["num_chunks"] != h["chunks_checked"]:
                mismatches.append(mismatch("hypertable", "%s: reports %s chunks but %s are listed" % (
                    name, h["num_chunks"], h["chunks_checked"]), name, h["num_chunks"], h["chunks_checked"]))
            h["ok"] = not (h["chunks_missing"] or h["chunks_unreadable"]) and (
                h["num_chunks"] is None or h["num_chunks"] == h["chunks_checked"])
        return out, mismatches

    def explain_lock_wait(self, err: DatabaseQueryError) -> DatabaseQueryError:
        """A scan that hit lock_timeout: say which lock it waited for and who holds it."""
        try:
            s = self.connector.session()
            try:
                holders = s.query(LOCK_HOLDERS_SQL)
            finally:
                s.close()
        except AgbotDrError:
            holders = []
        who = "; ".join("%s held in %s by pid %s (%s, user %s, %s: %s)" % (
            h["relation"], h["mode"], h["pid"], h["application_name"] or "?", h["usename"], h["state"], h["query"])
            for h in holders) or "the holder had gone when looked up"
        return DatabaseQueryError(
            "Failed integrity check of %s: a read waited longer than lock_timeout (%ss) for a lock: %s. Wait for that "
            "session to finish or end it (pg_terminate_backend), or raise lock_timeout, then re-run"
            % (self.connector.target, self.p["lock_timeout"], who), **err.details)

    # all ---------------------------------------------------------------------------------
    def run(self, result: dict) -> None:
        try:
            self._run(result)
        except DatabaseQueryError as err:
            if err.details.get("sqlstate") == LOCK_NOT_AVAILABLE:
                raise self.explain_lock_wait(err) from err
            raise

    def _run(self, result: dict) -> None:
        p = self.p
        result["queries"] = self.recorder.queries
        result["database"] = p["login_db"]
        expected = load_expected(p)
        result["backup_id"] = ((expected or {}).get("backup") or {}).get("id")
        if p["superset"] and expected is None:
            raise ManifestError("superset: true needs a manifest (manifest or manifest_path)")
        elapsed = {}
        session = self.connector.session()
        try:
            amcheck_ext = self.ensure_amcheck(session) if p["amcheck"] else None
            started = time.monotonic()
            observed, mismatches = self.observe(session, expected)
            elapsed["manifest"] = round(time.monotonic() - started, 3)
            tsdb = session.one(EXTENSION_SQL, ("timescaledb",))
            result["timescaledb"] = {"installed": tsdb is not None, "version": tsdb["version"] if tsdb else None}
            amcheck = None
            if amcheck_ext is not None:
                started = time.monotonic()
                amcheck = self.amcheck(session, amcheck_ext)
                elapsed["amcheck"] = round(time.monotonic() - started, 3)
                if amcheck is not None:
                    result["amcheck"] = amcheck
                    for rel, entry in amcheck.items():
                        if entry["status"] == "errors":
                            mismatches.append(mismatch("corruption", "%s (%s of %s): %s" % (
                                rel, entry["kind"], entry["table"], "; ".join(entry["errors"][:5])), entry["table"]))
            if tsdb is not None and p["hypertables"]:
                started = time.monotonic()
                result["hypertables"], hyper_mismatches = self.hypertables(session)
                mismatches.extend(hyper_mismatches)
                elapsed["hypertables"] = round(time.monotonic() - started, 3)
        finally:
            session.close()
        report = self.report(expected, observed, amcheck)
        exp_tables = (expected or {}).get("tables", {})
        result.update(report=report, mismatches=mismatches, ok=not mismatches,
                      observed=observed, elapsed_seconds=elapsed, changed=self.changed,
                      rows_since=rows_since(observed),
                      compared={"tables": len([t for t in exp_tables if t in report]),
                                "rows": sum(e["rows"] for e in exp_tables.values()),
                                "checksum_tables": len([r for r in report.values() if r["checksum_ok"] is not None]),
                                "amcheck_relations": len(amcheck or {}),
                                "superset": bool(p["superset"] and expected is not None)})
        if mismatches and p["fail_on_mismatch"]:
            raise IntegrityMismatchError(
                "Failed integrity check of %s: %d problem(s): %s" % (
                    self.connector.target, len(mismatches), "; ".join(m["message"] for m in mismatches)))

    @staticmethod
    def report(expected: dict | None, observed: dict, amcheck: dict | None) -> dict:
        exp_tables = (expected or {}).get("tables", {})
        obs_tables = observed["tables"]
        per_table_amcheck: dict = {}
        for entry in (amcheck or {}).values():
            status = per_table_amcheck.get(entry["table"], "ok")
            if entry["status"] == "errors":
                status = "errors"
            per_table_amcheck[entry["table"]] = status
        out = {}
        for name in sorted(set(exp_tables) | set(obs_tables)):
            obs, exp = obs_tables.get(name), exp_tables.get(name)
            checksum_ok = None
            if (obs and exp and exp.get("checksum") is not None and obs.get("checksum") is not None
                    and comparable(expected, observed)):
                checksum_ok = str(exp["checksum"]) == str(obs["checksum"])
            amcheck_status = "missing" if obs is None else per_table_amcheck.get(
                name, "skipped" if amcheck is None else "ok")
            out[name] = {"present": obs is not None, "rows": obs["rows"] if obs else None,
                         "expected_rows": exp["rows"] if exp else None, "checksum_ok": checksum_ok,
                         "max_time": obs.get("max_time") if obs else None, "amcheck": amcheck_status}
        return out


def run(module: AnsibleModule, result: dict) -> None:
    if module.params["parallel"] < 1:
        raise AgbotDrError("parallel must be 1 or more")
    Checker(module).run(result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[["manifest", "manifest_path"]])
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

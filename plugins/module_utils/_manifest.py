# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database manifests: what a backup must later prove, and how to compare.

A manifest is JSON (schema_version 1)::

    {
      "schema_version": 1,
      "created_at": "2025-01-01T00:00:00.123456+00:00",   # now() of the snapshot transaction (UTC)
      "snapshot": "7412:7412:",                          # pg_current_snapshot() of that transaction
      "database": "ag_botkit",
      "server_version": "15.10", "server_version_num": 150010,
      "extensions": {"plpgsql": "1.0", "timescaledb": "2.14.2"},
      "hypertables": {"public.metrics": {"num_chunks": 3}},  # only where timescaledb is installed
      "checksum_algorithm": "sum64-md5-rowtext-v1",          # null when checksums were off
      "schema_hash": "sha256:...",
      "tables": {"public.orders": {"rows": 1000, "checksum": "-123...", "max_time": "2025-...+00",
                                    "time_column": "created_at"}}
    }

Row checksums are order-independent sums of one 64-bit hash per row, summed exactly (PostgreSQL's
sum(bigint) is numeric, so nothing wraps). A sum does not depend on row order, so the dump's and
the restore's physical order do not matter, and it is computed in the same single sequential scan
as count(*) and max(time), which PostgreSQL may run with parallel workers. A changed, missing or
duplicated row changes the sum; a forged collision would need two 64-bit hashes to cancel, which
is not a threat model for DR checks. Two algorithms:

- ``sum64-typedhash-v2`` (the default): per row h = hash_record_extended(ROW(col, ...), 0), where a column
  whose type hashes by value (integers, floats, numeric, bool, text types, date/time types,
  interval, uuid, bytea, jsonb, inet/cidr, macaddr, and arrays of these) goes in as it is, and any
  other column (enums, whose hash is their OID and so changes on restore; json; domains;
  composites; geometric types; anything without a hash opclass) goes in as its text output.
  Text goes in with COLLATE "C", so a nondeterministic collation's sort keys never enter. The
  sum is over hashfloat8extended(h::float8, 0), not over h: hash_record_extended combines the
  column hashes linearly (result * 31 + hash), so a plain sum over rows is a weighted sum of
  per-column totals, and two rows swapping a column's values would leave it unchanged (v1 did
  that and caught such a swap about one time in three). Hashing h again mixes it non-linearly;
  the float8 cast keeps about 54 of its 64 bits (a changed row goes unnoticed with probability
  about 2^-54) and costs next to nothing, where h::text would add a quarter to the scan. About
  5x cheaper than md5 of the row text, because no row is turned into text. Values that compare
  equal hash equal: numeric 1.5 and 1.50, interval '1 day' and '24 hours', float -0 and 0, so such
  a change is not seen (md5 of the text sees it). These are the extended
  hash functions hash partitioning uses, which survive pg_upgrade unchanged, but PostgreSQL does
  not document them as stable, and they depend on the CPU's byte order. So the manifest also keeps
  ``checksum_canary``: the same hash of one fixed row of every type above. db_integrity recomputes
  it, and if the server hashes differently it reports that the checksums cannot be compared
  (kind checksum_algorithm) instead of calling every table changed.
- ``sum64-md5-rowtext-v1``: the first 64 bits of md5(row::text), read as a signed bigint. Portable
  across versions and architectures (the session is pinned to UTC / ISO / extra_float_digits=1 /
  hex bytea); the text output of every row makes it about 5x more expensive.

(``sum64-hashrecord-v1``, hash_record_extended of the whole row, is still read for manifests
written with it; it fails on types without a hash function and on enums after a restore, and its
plain sum misses values swapped between rows.)

Schema hash: sha256 over a canonical JSON of, per table, its columns (name, type, not null,
default, identity, generated), constraints (name, type, definition) and indexes (name,
definition), every list sorted so the hash does not depend on catalog order or column
position. Definitions come from pg_get_constraintdef/pg_get_indexdef/pg_get_expr with
search_path=pg_catalog, so every user object is schema-qualified and the database name never
appears: a restore into another database name hashes the same.

This file is pure Python (no psycopg): the collector takes a connector whose sessions offer
query()/one()/execute() (see _pg.PgConnector), so the logic is unit-tested with fakes.
"""

from __future__ import annotations

import hashlib
import json
import re

from ansible_collections.agbotkit.dr.plugins.module_utils._pg import quote_ident
from ansible_collections.agbotkit.dr.plugins.module_utils._pool import run_pool

SCHEMA_VERSION = 1
MD5_CHECKSUM_ALGORITHM = "sum64-md5-rowtext-v1"
TYPED_CHECKSUM_ALGORITHM = "sum64-typedhash-v2"
HASH_CHECKSUM_ALGORITHM = "sum64-hashrecord-v1"  # read for old manifests; see the docstring
CHECKSUM_ALGORITHM = TYPED_CHECKSUM_ALGORITHM  # the default
CHECKSUM_ALGORITHMS = {"typed": TYPED_CHECKSUM_ALGORITHM, "md5": MD5_CHECKSUM_ALGORITHM,
                       "hash": HASH_CHECKSUM_ALGORITHM}
# The algorithms with one expression for every table; the typed one is built from the table's columns
# (typed_hash_expression).
CHECKSUM_EXPRESSIONS = {
    MD5_CHECKSUM_ALGORITHM: "coalesce(sum(('x' || substr(md5(agbot__r::text), 1, 16))::bit(64)::bigint), 0)::text",
    HASH_CHECKSUM_ALGORITHM: "coalesce(sum(hash_record_extended(agbot__r, 0)), 0)::text",
}
KNOWN_CHECKSUM_ALGORITHMS = frozenset(CHECKSUM_ALGORITHMS.values())
# Types (format_type without typmod) whose extended hash function hashes the value itself; arrays
# of them hash element by element. Anything else is hashed as its text output.
VALUE_HASHED_TYPES = frozenset((
    "smallint", "integer", "bigint", "real", "double precision", "numeric", "boolean",
    "text", "character varying", "character", "date", "timestamp with time zone",
    "timestamp without time zone", "time without time zone", "time with time zone", "interval",
    "uuid", "bytea", "jsonb", "inet", "cidr", "macaddr", "macaddr8",
))
COLLATABLE_TYPES = frozenset(("text", "character varying", "character"))
# One fixed row of every type above: if two servers hash it differently, their typed checksums
# cannot be compared (another byte order, or a PostgreSQL that changed a hash function).
CANARY_SQL = (
    "SELECT pg_catalog.hashfloat8extended(pg_catalog.hash_record_extended(ROW("
    "1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, 1.25::numeric, true, "
    "'agbotkit'::text COLLATE \"C\", 'a'::varchar COLLATE \"C\", 'b'::bpchar COLLATE \"C\", "
    "'2025-01-02'::date, '2025-01-02 03:04:05.678+00'::timestamptz, '2025-01-02 03:04:05'::timestamp, "
    "'03:04:05'::time, '03:04:05+02'::timetz, '1 day 2 hours'::interval, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '\\x0102'::bytea, '{\"a\": [1, 2.5]}'::jsonb, "
    "'10.1.2.3'::inet, '10.1.0.0/16'::cidr, '08:00:2b:01:02:03'::macaddr, '08:00:2b:01:02:03:04:05'::macaddr8, "
    "ARRAY[1, 2]::int8[], ARRAY['x', 'y']::text[]), 0)::float8, 0)::text AS canary"
)

# Volatile keys: differ between two manifests of identical data.
VOLATILE_KEYS = ("created_at", "snapshot")

# Time column rule: first of these names that is a timestamp column; otherwise the
# alphabetically first timestamp column whose name ends in _at / _time / _ts; otherwise the
# table's only timestamp column; otherwise none.
PREFERRED_TIME_COLUMNS = ("time", "ts", "timestamp", "event_time", "created_at", "filled_at",
                          "executed_at", "inserted_at", "recorded_at", "updated_at")
TIME_TYPES = ("timestamp with time zone", "timestamp without time zone")

EXCLUDED_SCHEMA_SQL = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'timescaledb_information', "
    "'timescaledb_experimental', 'toolkit_experimental') "
    "AND n.nspname !~ '^pg_' AND n.nspname !~ '^_timescaledb'"
)

LIST_TABLES_SQL = (  # constant SQL, no user input
    "SELECT format('%s.%s', n.nspname, c.relname) AS name, n.nspname AS schema, c.relname AS relname, "  # noqa: S608
    "pg_catalog.pg_relation_size(c.oid) AS bytes "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence IN ('p', 'u') "
    "AND " + EXCLUDED_SCHEMA_SQL + " "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e') "
    "ORDER BY 1"
)

_TABLE_FILTER = (
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE format('%%s.%%s', n.nspname, c.relname) = ANY(%s)"
)

COLUMNS_SQL = (
    "SELECT format('%%s.%%s', n.nspname, c.relname) AS tbl, a.attname AS name, "
    "pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null, "
    "pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attidentity::text AS identity, "
    "a.attgenerated::text AS generated, pg_catalog.format_type(a.atttypid, NULL) AS base_type "
    "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    + _TABLE_FILTER + " AND a.attnum > 0 AND NOT a.attisdropped"
)

CONSTRAINTS_SQL = (
    "SELECT format('%%s.%%s', n.nspname, c.relname) AS tbl, k.conname AS name, k.contype::text AS type, "
    "pg_catalog.pg_get_constraintdef(k.oid) AS definition "
    "FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid " + _TABLE_FILTER
)

INDEXES_SQL = (
    "SELECT format('%%s.%%s', n.nspname, c.relname) AS tbl, ic.relname AS name, "
    "pg_catalog.pg_get_indexdef(i.indexrelid) AS definition "
    "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
    "JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid " + _TABLE_FILTER
)

EXTENSIONS_SQL = "SELECT extname AS name, extversion AS version FROM pg_catalog.pg_extension ORDER BY 1"

HYPERTABLES_SQL = (
    "SELECT format('%s.%s', hypertable_schema, hypertable_name) AS name, num_chunks "
    "FROM timescaledb_information.hypertables ORDER BY 1"
)

SNAPSHOT_SQL = (
    "SELECT pg_catalog.now() AS snapshot_time, pg_catalog.pg_current_snapshot()::text AS snapshot, "
    "pg_catalog.current_database() AS database, pg_catalog.current_setting('server_version') AS server_version, "
    "pg_catalog.current_setting('server_version_num')::int AS server_version_num"
)

BEGIN_SQL = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


# --- pure helpers ---------------------------------------------------------------------------

def normalize_table_name(name: str) -> str:
    """'orders' -> 'public.orders'; 'schema.table' kept (names are unquoted, as in the catalog)."""
    name = name.strip()
    return name if "." in name else "public." + name


def split_table_name(name: str) -> tuple[str, str]:
    schema, _dot, table = normalize_table_name(name).partition(".")
    return schema, table


def qualified(name: str) -> str:
    schema, table = split_table_name(name)
    return "%s.%s" % (quote_ident(schema), quote_ident(table))


def pick_time_column(columns: list[dict]) -> str | None:
    """Pick the column whose max() the manifest records (rule in the module docstring).

    columns: dicts with at least name and type (format_type output)."""
    stamps = [c["name"] for c in columns if c.get("type") in TIME_TYPES]
    if not stamps:
        return None
    for preferred in PREFERRED_TIME_COLUMNS:
        if preferred in stamps:
            return preferred
    suffixed = sorted(n for n in stamps if re.search(r"(_at|_time|_ts)$", n))
    if suffixed:
        return suffixed[0]
    if len(stamps) == 1:
        return stamps[0]
    return None


def typed_hash_expression(columns: list[dict]) -> str:
    """The sum64-typedhash-v2 aggregate for a table with these columns (dicts with name, and
    base_type = format_type(atttypid, NULL); without base_type a column is hashed as text).
    A table without columns falls back to the md5 expression, which handles the empty row."""
    if not columns:
        return CHECKSUM_EXPRESSIONS[MD5_CHECKSUM_ALGORITHM]
    items = []
    for col in sorted(columns, key=lambda c: c["name"]):  # by name: a column order change is not a data change
        ref = "agbot__r.%s" % quote_ident(col["name"])
        base = col.get("base_type") or ""
        element = base[:-2] if base.endswith("[]") else base
        if element in VALUE_HASHED_TYPES:
            items.append(ref + (' COLLATE "C"' if element in COLLATABLE_TYPES else ""))
        else:
            items.append('(%s)::text COLLATE "C"' % ref)
    return ("coalesce(sum(pg_catalog.hashfloat8extended(pg_catalog.hash_record_extended(ROW(%s), 0)::float8, 0)), "
            "0)::text" % ", ".join(items))


def sql_literal(value: str) -> str:
    """A string as an SQL literal (standard_conforming_strings, the default since PostgreSQL 9.1)."""
    return "'%s'" % str(value).replace("'", "''")


def table_stats_sql(table: str, time_column: str | None, checksums: bool | str,
                    columns: list[dict] | None = None, watermark: str | None = None) -> str:
    """One pass over the table: count, order-independent checksum, max(time column).

    checksums: False, True (the default algorithm) or an algorithm name of KNOWN_CHECKSUM_ALGORITHMS.
    columns: the table's columns (needed by the typed algorithm, which orders them by name).
    watermark: with a time column, only rows whose time is at or before it are read (a manifest's max_time:
    the rows a backup held, whatever was written after it)."""
    parts = ["count(*) AS rows"]
    if checksums:
        algorithm = CHECKSUM_ALGORITHM if checksums is True else checksums
        if algorithm == TYPED_CHECKSUM_ALGORITHM:
            parts.append("%s AS checksum" % typed_hash_expression(columns or []))
        else:
            parts.append("%s AS checksum" % CHECKSUM_EXPRESSIONS[algorithm])
    if time_column:
        parts.append("max(agbot__r.%s)::text AS max_time" % quote_ident(time_column))
    source = qualified(table)
    if watermark is not None and time_column:
        # identifiers quoted with quote_ident(), the watermark with sql_literal()
        source = "(SELECT * FROM %s WHERE %s <= %s)" % (source, quote_ident(time_column),  # noqa: S608
                                                        sql_literal(watermark))
    # identifiers are quoted with quote_ident(): no injection through table or column names
    return "SELECT %s FROM %s AS agbot__r" % (", ".join(parts), source)  # noqa: S608


def rows_since_sql(table: str, time_column: str, watermark: str) -> str:
    """Rows written after a watermark (quoted identifiers and literal)."""
    return "SELECT count(*) AS n FROM %s WHERE %s > %s" % (  # noqa: S608
        qualified(table), quote_ident(time_column), sql_literal(watermark))


def canonical_schema(columns: list[dict], constraints: list[dict], indexes: list[dict]) -> dict:
    """Order-independent structure of tables → columns/constraints/indexes."""
    out: dict[str, dict] = {}

    def entry(table):
        return out.setdefault(table, {"columns": [], "constraints": [], "indexes": []})

    for c in columns:
        entry(c["tbl"])["columns"].append([
            c["name"], c["type"], bool(c.get("not_null")), c.get("default_expr"),
            c.get("identity") or "", c.get("generated") or "",
        ])
    for k in constraints:
        entry(k["tbl"])["constraints"].append([k["name"], k["type"], k["definition"]])
    for i in indexes:
        entry(i["tbl"])["indexes"].append([i["name"], i["definition"]])
    for t in out.values():
        for key in t:
            t[key].sort(key=json.dumps)
    return out


def schema_hash(canonical: dict) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_to_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def stable_part(manifest: dict) -> dict:
    """The manifest without the keys that differ between two snapshots of identical data."""
    return {k: v for k, v in manifest.items() if k not in VOLATILE_KEYS}


def validate_manifest(manifest, source: str = "manifest") -> dict:
    """Raise ValueError with a readable message unless this looks like a manifest we understand."""
    if not isinstance(manifest, dict):
        raise ValueError("%s is not a JSON object" % source)
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise ValueError("%s has no integer schema_version: not an agbotkit.dr manifest" % source)
    if version > SCHEMA_VERSION:
        raise ValueError("%s has schema_version %s; this collection reads up to %s: upgrade agbotkit.dr"
                         % (source, version, SCHEMA_VERSION))
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise ValueError("%s has no 'tables' object" % source)
    for name, entry in tables.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("rows"), int):
            raise ValueError("%s: table %s has no integer 'rows'" % (source, name))
    return manifest


def parse_manifest(text: str, source: str = "manifest") -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("%s is not valid JSON: %s" % (source, exc)) from exc
    return validate_manifest(data, source)


def mismatch(kind: str, message: str, table: str | None = None, expected=None, observed=None) -> dict:
    return {"kind": kind, "table": table, "expected": expected, "observed": observed, "message": message}


def comparable(expected: dict, observed: dict) -> bool:
    """Whether the two manifests' row checksums can be compared: the same algorithm, and with the typed
    algorithm the same canary (the same hash functions on both servers)."""
    return (expected.get("checksum_algorithm") is not None
            and expected.get("checksum_algorithm") == observed.get("checksum_algorithm")
            and expected.get("checksum_canary") == observed.get("checksum_canary"))


def compare(expected: dict, observed: dict, checksums: bool = True) -> list[dict]:
    """Everything in which `observed` differs from the manifest `expected`, as human messages.

    Extensions: only those named in the manifest are compared (an extra one, e.g. amcheck
    installed for the check, is not a mismatch). Tables: missing, extra, rows, checksum (when
    both sides have one with the same algorithm and `checksums`), max_time. Then schema_hash
    and hypertables."""
    out: list[dict] = []
    exp_tables = expected.get("tables", {})
    obs_tables = observed.get("tables", {})
    for name in sorted(exp_tables):
        exp = exp_tables[name]
        obs = obs_tables.get(name)
        if obs is None:
            out.append(mismatch("missing_table", "%s: table is missing (manifest has %s rows)" % (name, exp["rows"]),
                                name, exp["rows"], None))
            continue
        if obs.get("rows") != exp["rows"]:
            diff = obs.get("rows", 0) - exp["rows"]
            out.append(mismatch("rows", "%s: %s rows, manifest says %s (%s%d)" % (
                name, obs.get("rows"), exp["rows"], "+" if diff > 0 else "", diff), name, exp["rows"], obs.get("rows")))
        if (checksums and comparable(expected, observed) and exp.get("checksum") is not None
                and obs.get("checksum") is not None
                and str(exp["checksum"]) != str(obs["checksum"])):
            out.append(mismatch("checksum", "%s: row checksum differs from the manifest (rows changed)" % name,
                                name, exp["checksum"], obs["checksum"]))
        if exp.get("time_column") and exp.get("max_time") != obs.get("max_time"):
            out.append(mismatch("max_time", "%s: max(%s) is %s, manifest says %s" % (
                name, exp["time_column"], obs.get("max_time"), exp.get("max_time")), name,
                exp.get("max_time"), obs.get("max_time")))
    for name in sorted(set(obs_tables) - set(exp_tables)):
        out.append(mismatch("extra_table", "%s: table exists but is not in the manifest" % name, name, None,
                            obs_tables[name].get("rows")))
    if checksums and expected.get("checksum_algorithm") and observed.get("checksum_algorithm") and \
            expected.get("checksum_algorithm") != observed.get("checksum_algorithm"):
        out.append(mismatch("checksum_algorithm", "checksum algorithm %s differs from the manifest's %s" % (
            observed.get("checksum_algorithm"), expected.get("checksum_algorithm")), None,
            expected.get("checksum_algorithm"), observed.get("checksum_algorithm")))
    elif (checksums and expected.get("checksum_algorithm") and expected.get("checksum_algorithm") ==
          observed.get("checksum_algorithm") and expected.get("checksum_canary") != observed.get("checksum_canary")):
        out.append(mismatch("checksum_algorithm", "this server hashes a fixed test row differently from the server "
                            "that made the manifest (%s != %s: another CPU byte order or PostgreSQL version), so row "
                            "checksums cannot be compared; counts, max(time), schema and amcheck were still checked. "
                            "Verify with checksums: false, or take backups with checksum_algorithm: md5 where they "
                            "must be checked on other hardware" % (
                                observed.get("checksum_canary"), expected.get("checksum_canary")),
                            None, expected.get("checksum_canary"), observed.get("checksum_canary")))
    if expected.get("schema_hash") and expected.get("schema_hash") != observed.get("schema_hash"):
        out.append(mismatch("schema_hash", "schema (tables, columns, types, constraints, indexes) differs from the "
                            "manifest: %s != %s" % (observed.get("schema_hash"), expected.get("schema_hash")),
                            None, expected.get("schema_hash"), observed.get("schema_hash")))
    obs_ext = observed.get("extensions", {}) or {}
    for ext, version in sorted((expected.get("extensions") or {}).items()):
        if ext not in obs_ext:
            out.append(mismatch("extension_missing", "extension %s %s is not installed" % (ext, version),
                                None, version, None))
        elif obs_ext[ext] != version:
            out.append(mismatch("extension_version", "extension %s is version %s, manifest says %s" % (
                ext, obs_ext[ext], version), None, version, obs_ext[ext]))
    obs_hyper = observed.get("hypertables") or {}
    for name in sorted(expected.get("hypertables") or {}):
        if name not in obs_hyper:
            out.append(mismatch("hypertable_missing", "%s: not a hypertable any more (manifest lists it)" % name,
                                name, True, False))
    return out


# --- the live database against a manifest, allowing what was written since -----------------------

# A time column with one of these names moves when a row is updated in place (positions.updated_at), so a
# row changed since the backup is no longer "at or before the watermark": such tables are bounded by count.
MUTABLE_TIME_COLUMNS = frozenset(("updated_at", "modified_at", "last_updated", "last_modified"))
NO_WATERMARK = "-infinity"  # an empty table at backup time: every row now was written since


def watermark_plan(manifest: dict) -> dict:
    """{table: {"mode": "watermark"|"mutable", "time_column", "max_time"}} for the tables of a manifest that
    have a time column. Tables without one are compared exactly (every row, as at backup time)."""
    plan = {}
    for name, entry in (manifest.get("tables") or {}).items():
        column = entry.get("time_column")
        if not column:
            continue
        if column in MUTABLE_TIME_COLUMNS:
            plan[name] = {"mode": "mutable", "time_column": column, "max_time": entry.get("max_time")}
        else:
            plan[name] = {"mode": "watermark", "time_column": column,
                          "max_time": entry.get("max_time") or NO_WATERMARK}
    return plan


def compare_superset(expected: dict, observed: dict, checksums: bool = True) -> list[dict]:
    """compare() for a live database that may have been written to since the backup was restored into it.

    observed comes from a ManifestCollector given watermark_plan(expected): per table with a time column, the
    rows at or before the manifest's max_time (which must match the manifest exactly: count, checksum,
    max(time)), and rows_since after it (not a mismatch). Tables whose time column is updated in place
    ("mutable") must hold at least the manifest's row count. Tables without a time column must match exactly.
    Tables created since are not a mismatch; a missing table, changed schema or extension is."""
    out = []
    exp_tables = expected.get("tables", {})
    obs_tables = observed.get("tables", {})
    for found in compare(expected, observed, checksums=checksums):
        name = found["table"] or ""
        obs = obs_tables.get(name) or {}
        mark = obs.get("watermark")
        got = obs.get("rows") or 0
        m = found
        if found["kind"] == "extra_table":
            continue
        if mark == "mutable" and found["kind"] in ("checksum", "max_time"):
            continue
        if mark == "mutable" and found["kind"] == "rows":
            want = exp_tables[name]["rows"]
            if got >= want:
                continue
            m = dict(found, message="%s: %s rows, the backup held %s: %d row(s) deleted" % (
                name, got, want, want - got))
        elif mark is not None and found["kind"] == "rows":
            want = found["expected"]
            m = dict(found, message="%s: %s rows up to %s (the backup's newest), the backup held %s: %d row(s) %s" % (
                name, got, mark, want, abs(want - got),
                "missing" if got < want else "added before the backup's newest row"))
        elif mark is not None and found["kind"] == "checksum":
            m = dict(found, message="%s: rows up to %s differ from the backup (changed)" % (name, mark))
        out.append(m)
    return out


def rows_since(observed: dict) -> dict:
    """{table: rows written after the backup's newest row} from a superset observation (non-zero only)."""
    return {name: t["rows_since"] for name, t in sorted((observed.get("tables") or {}).items())
            if t.get("rows_since")}


# --- collection (duck-typed sessions) ----------------------------------------------------------

class ManifestCollector:
    """Builds a manifest inside one REPEATABLE READ READ ONLY snapshot.

    With parallel > 1, the leader exports its snapshot (pg_export_snapshot) and up to
    parallel - 1 more sessions adopt it (SET TRANSACTION SNAPSHOT), so every table is read at
    the same instant while several tables are scanned at once. Largest tables go first."""

    def __init__(self, connector, checksums: bool = True, parallel: int = 2, algorithm: str = CHECKSUM_ALGORITHM,
                 watermarks: dict | None = None):
        if algorithm not in KNOWN_CHECKSUM_ALGORITHMS:
            raise ValueError("unknown checksum algorithm %r (known: %s)" % (
                algorithm, ", ".join(sorted(KNOWN_CHECKSUM_ALGORITHMS))))
        self.connector = connector
        self.checksums = algorithm if checksums else False
        self.algorithm = algorithm
        self.parallel = max(1, int(parallel))
        # {table: {"time_column": c, "max_time": t}}: read only rows up to t (see watermark_plan)
        self.watermarks = watermarks or {}

    # table list / schema -------------------------------------------------------------------
    @staticmethod
    def list_tables(session) -> list[dict]:
        return session.query(LIST_TABLES_SQL)

    @staticmethod
    def schema_of(session, names: list[str]) -> tuple[dict, dict]:
        """(canonical schema, columns per table)."""
        columns = session.query(COLUMNS_SQL, (names,))
        constraints = session.query(CONSTRAINTS_SQL, (names,))
        indexes = session.query(INDEXES_SQL, (names,))
        per_table: dict[str, list] = {}
        for c in columns:
            per_table.setdefault(c["tbl"], []).append(c)
        return canonical_schema(columns, constraints, indexes), per_table

    def collect(self, tables: list[str] | None = None, schema_tables: list[str] | None = None,
                strict: bool = True, snapshot: str | None = None) -> dict:
        """tables: names to read (None = all user tables). strict: a named table that does not
        exist raises ValueError; otherwise it is left out (db_integrity reports it missing).
        schema_tables: the set the schema hash covers (default: the tables read).
        snapshot: an id from pg_export_snapshot() held open by the caller (e.g. the one pg_dump
        uses): every session adopts it, so the manifest describes exactly that snapshot; created_at
        is then the start of the adopting transaction, moments after the snapshot was taken."""
        leader = self.connector.session()
        workers = []
        try:
            leader.execute(BEGIN_SQL)
            if snapshot:
                leader.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            snap = leader.one(SNAPSHOT_SQL)
            existing = {t["name"]: t for t in self.list_tables(leader)}
            if tables is None:
                names = sorted(existing)
            else:
                wanted = [normalize_table_name(t) for t in tables]
                absent = [t for t in wanted if t not in existing]
                if absent and strict:
                    raise ValueError("table(s) not found: %s" % ", ".join(absent))
                names = sorted(t for t in set(wanted) if t in existing)
            hash_names = names if schema_tables is None else sorted(
                normalize_table_name(t) for t in schema_tables if normalize_table_name(t) in existing)
            canonical, columns = self.schema_of(leader, sorted(set(names) | set(hash_names)))
            canonical_hashed = {k: v for k, v in canonical.items() if k in hash_names}
            extensions = {r["name"]: r["version"] for r in leader.query(EXTENSIONS_SQL)}
            hypertables = None
            if "timescaledb" in extensions:
                hypertables = {r["name"]: {"num_chunks": r["num_chunks"]} for r in leader.query(HYPERTABLES_SQL)}

            canary = None
            if self.checksums == TYPED_CHECKSUM_ALGORITHM:
                canary = leader.one(CANARY_SQL)["canary"]
            jobs = []
            for name in sorted(names, key=lambda n: (-(existing[n].get("bytes") or 0), n)):
                jobs.append((name, pick_time_column(columns.get(name, [])), columns.get(name, [])))
            n_workers = min(self.parallel, len(jobs)) if jobs else 1
            sessions = [leader]
            if n_workers > 1:
                exported = snapshot or leader.one("SELECT pg_catalog.pg_export_snapshot() AS id")["id"]
                for _worker in range(n_workers - 1):
                    s = self.connector.session()
                    workers.append(s)
                    s.execute(BEGIN_SQL)
                    s.execute("SET TRANSACTION SNAPSHOT %s", (exported,))
                    sessions.append(s)
            results = self._run(sessions, jobs)
            for s in sessions:
                s.execute("COMMIT")
        finally:
            for s in workers:
                s.close()
            leader.close()

        snapshot_time = snap["snapshot_time"]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created_at": snapshot_time.isoformat() if hasattr(snapshot_time, "isoformat") else str(snapshot_time),
            "snapshot": snap["snapshot"],
            "database": snap["database"],
            "server_version": snap["server_version"],
            "server_version_num": snap["server_version_num"],
            "extensions": extensions,
            "checksum_algorithm": self.algorithm if self.checksums else None,
            "checksum_canary": canary,
            "schema_hash": schema_hash(canonical_hashed),
            "tables": {name: results[name] for name in sorted(results)},
        }
        if hypertables is not None:
            manifest["hypertables"] = hypertables
        return manifest

    def _run(self, sessions, jobs) -> dict:
        def stats(session, job):
            name, time_column, columns = job
            mark = self.watermarks.get(name)
            if mark and mark.get("mode") == "mutable":
                # rows updated in place move past any watermark: only their number can be bounded
                row = session.one(table_stats_sql(name, None, False, columns))
                return {"rows": int(row["rows"]), "checksum": None, "max_time": None, "time_column": time_column,
                        "watermark": "mutable"}
            if mark and mark.get("mode") == "watermark" and mark.get("time_column") == time_column:
                row = session.one(table_stats_sql(name, time_column, self.checksums, columns, mark["max_time"]))
                since = session.one(rows_since_sql(name, time_column, mark["max_time"]))
                return {"rows": int(row["rows"]), "checksum": row.get("checksum") if self.checksums else None,
                        "max_time": row.get("max_time"), "time_column": time_column, "watermark": mark["max_time"],
                        "rows_since": int(since["n"])}
            row = session.one(table_stats_sql(name, time_column, self.checksums, columns))
            return {
                "rows": int(row["rows"]),
                "checksum": row.get("checksum") if self.checksums else None,
                "max_time": row.get("max_time"),
                "time_column": time_column,
            }

        results = run_pool(sessions, jobs, stats)
        return {job[0]: results[i] for i, job in enumerate(jobs)}

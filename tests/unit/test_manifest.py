"""Pure logic of manifests: time column rule, checksum SQL, canonical schema hash, compare, collector."""

from __future__ import annotations

import copy
import datetime as dt
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils import _manifest as m  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (  # noqa: E402
    connection_params,
    postgres_argument_spec,
)


def manifest(**tables):
    base = {
        "schema_version": 1,
        "created_at": "2025-01-01T00:00:00+00:00",
        "snapshot": "10:10:",
        "database": "ag_botkit",
        "server_version": "15.10",
        "server_version_num": 150010,
        "extensions": {"plpgsql": "1.0", "timescaledb": "2.14.2"},
        "checksum_algorithm": m.CHECKSUM_ALGORITHM,
        "schema_hash": "sha256:aaa",
        "tables": {
            "public.orders": {"rows": 1000, "checksum": "123", "max_time": "2025-01-01 00:00:00+00",
                              "time_column": "created_at"},
            "public.fills": {"rows": 50, "checksum": "-7", "max_time": None, "time_column": "filled_at"},
        },
    }
    base["tables"].update(tables)
    return base


# --- time column rule ---------------------------------------------------------------------------

TS = "timestamp with time zone"


@pytest.mark.parametrize(("columns", "expected"), [
    ([("id", "bigint"), ("created_at", TS), ("time", TS)], "time"),
    ([("updated_at", TS), ("created_at", TS)], "created_at"),
    ([("filled_at", TS), ("id", "bigint")], "filled_at"),
    ([("zz_at", TS), ("aa_time", "timestamp without time zone")], "aa_time"),
    ([("stamp", TS)], "stamp"),
    ([("stamp", TS), ("other", TS)], None),
    ([("id", "bigint"), ("time", "text")], None),
    ([], None),
])
def test_pick_time_column(columns, expected):
    assert m.pick_time_column([{"name": n, "type": t} for n, t in columns]) == expected


# --- SQL of one table -----------------------------------------------------------------------------

def test_table_stats_sql_quotes_and_checksums():
    sql = m.table_stats_sql('we"ird.Orders', "created_at", m.MD5_CHECKSUM_ALGORITHM)
    assert 'FROM "we""ird"."Orders" AS agbot__r' in sql
    assert "count(*) AS rows" in sql
    assert "md5(agbot__r::text)" in sql and "::bit(64)::bigint" in sql
    assert 'max(agbot__r."created_at")::text AS max_time' in sql


def test_table_stats_sql_counts_only_and_hash_algorithm():
    assert "checksum" not in m.table_stats_sql("orders", None, False)
    assert "max_time" not in m.table_stats_sql("orders", None, False)
    assert "hash_record_extended" in m.table_stats_sql("orders", None, m.HASH_CHECKSUM_ALGORITHM)


def test_default_algorithm_is_typed_and_hashes_values_or_text():
    columns = [
        {"name": "price", "base_type": "numeric"},
        {"name": "side", "base_type": "order_side"},          # an enum: its hash is its OID, so text
        {"name": "labels", "base_type": "json"},              # no hash function: text
        {"name": "Name", "base_type": "text"},
        {"name": "tags", "base_type": "text[]"},
        {"name": "moods", "base_type": "order_side[]"},
        {"name": "time", "base_type": "timestamp with time zone"},
        {"name": "legacy"},                                   # type unknown: text
    ]
    sql = m.table_stats_sql("orders", None, True, columns)
    assert m.CHECKSUM_ALGORITHM == m.TYPED_CHECKSUM_ALGORITHM
    row = sql.split("hash_record_extended(ROW(")[1].split("), 0)")[0]
    # sorted by column name, so a column order change alone is not a data change
    assert row == ('agbot__r."Name" COLLATE "C", (agbot__r."labels")::text COLLATE "C", '
                   '(agbot__r."legacy")::text COLLATE "C", (agbot__r."moods")::text COLLATE "C", '
                   'agbot__r."price", (agbot__r."side")::text COLLATE "C", agbot__r."tags" COLLATE "C", '
                   'agbot__r."time"')
    assert "md5" not in sql
    # each row's hash is hashed again: hash_record_extended alone is linear in the column hashes
    assert sql.startswith("SELECT count(*) AS rows, coalesce(sum(pg_catalog.hashfloat8extended("
                          "pg_catalog.hash_record_extended(ROW(")
    assert "), 0)::float8, 0)), 0)::text AS checksum" in sql
    # a table without columns cannot build ROW(): md5 of the (empty) row text
    assert "md5(agbot__r::text)" in m.table_stats_sql("empty", None, True, [])


def test_normalize_table_names():
    assert m.normalize_table_name("orders") == "public.orders"
    assert m.normalize_table_name(" trading.metrics ") == "trading.metrics"
    assert m.qualified("orders") == '"public"."orders"'


# --- canonical schema and its hash ----------------------------------------------------------------

COLUMNS = [
    {"tbl": "public.orders", "name": "id", "type": "bigint", "not_null": True, "default_expr": "nextval(...)",
     "identity": "", "generated": ""},
    {"tbl": "public.orders", "name": "symbol", "type": "text", "not_null": True, "default_expr": None,
     "identity": "", "generated": ""},
    {"tbl": "public.fills", "name": "qty", "type": "numeric", "not_null": False, "default_expr": None,
     "identity": "", "generated": ""},
]
CONSTRAINTS = [
    {"tbl": "public.orders", "name": "orders_pkey", "type": "p", "definition": "PRIMARY KEY (id)"},
    {"tbl": "public.fills", "name": "fills_order_fk", "type": "f",
     "definition": "FOREIGN KEY (order_id) REFERENCES public.orders(id)"},
]
INDEXES = [
    {"tbl": "public.orders", "name": "orders_pkey", "definition": "CREATE UNIQUE INDEX orders_pkey ..."},
    {"tbl": "public.orders", "name": "orders_symbol_idx", "definition": "CREATE INDEX orders_symbol_idx ..."},
]


def test_schema_hash_is_order_independent():
    h1 = m.schema_hash(m.canonical_schema(COLUMNS, CONSTRAINTS, INDEXES))
    h2 = m.schema_hash(m.canonical_schema(list(reversed(COLUMNS)), list(reversed(CONSTRAINTS)),
                                          list(reversed(INDEXES))))
    assert h1 == h2
    assert h1.startswith("sha256:") and len(h1) == len("sha256:") + 64


@pytest.mark.parametrize("change", ["drop_index", "type", "not_null", "constraint"])
def test_schema_hash_sees_changes(change):
    cols, cons, idx = copy.deepcopy(COLUMNS), copy.deepcopy(CONSTRAINTS), copy.deepcopy(INDEXES)
    if change == "drop_index":
        idx.pop()
    elif change == "type":
        cols[1]["type"] = "character varying(10)"
    elif change == "not_null":
        cols[1]["not_null"] = False
    else:
        cons.pop()
    assert m.schema_hash(m.canonical_schema(cols, cons, idx)) != m.schema_hash(
        m.canonical_schema(COLUMNS, CONSTRAINTS, INDEXES))


# --- compare ----------------------------------------------------------------------------------------

def kinds(mismatches):
    return sorted((x["kind"], x["table"]) for x in mismatches)


def test_compare_identical_is_empty_even_with_other_snapshot_time():
    other = manifest()
    other["created_at"] = "2030-01-01T00:00:00+00:00"
    other["snapshot"] = "99:99:"
    assert m.compare(manifest(), other) == []


def test_compare_rows_and_checksum():
    obs = manifest()
    obs["tables"]["public.orders"] = dict(obs["tables"]["public.orders"], rows=999, checksum="122")
    out = m.compare(manifest(), obs)
    assert kinds(out) == [("checksum", "public.orders"), ("rows", "public.orders")]
    rows = next(x for x in out if x["kind"] == "rows")
    assert rows["message"] == "public.orders: 999 rows, manifest says 1000 (-1)"
    assert (rows["expected"], rows["observed"]) == (1000, 999)


def test_compare_checksum_only_change_and_checksums_off():
    obs = manifest()
    obs["tables"]["public.fills"]["checksum"] = "8"
    assert kinds(m.compare(manifest(), obs)) == [("checksum", "public.fills")]
    assert m.compare(manifest(), obs, checksums=False) == []


def test_compare_missing_and_extra_tables():
    obs = manifest()
    del obs["tables"]["public.fills"]
    obs["tables"]["public.scratch"] = {"rows": 3, "checksum": "1", "max_time": None, "time_column": None}
    out = m.compare(manifest(), obs)
    assert kinds(out) == [("extra_table", "public.scratch"), ("missing_table", "public.fills")]
    assert "public.fills: table is missing" in out[0]["message"] + out[1]["message"]


def test_compare_schema_extensions_hypertables_max_time():
    exp = manifest()
    exp["hypertables"] = {"public.metrics": {"num_chunks": 2}}
    obs = manifest()
    obs["schema_hash"] = "sha256:bbb"
    obs["extensions"] = {"plpgsql": "1.0", "timescaledb": "2.15.0", "amcheck": "1.3"}
    obs["hypertables"] = {}
    obs["tables"]["public.orders"]["max_time"] = "2024-12-31 00:00:00+00"
    out = m.compare(exp, obs)
    assert kinds(out) == [("extension_version", None), ("hypertable_missing", "public.metrics"),
                          ("max_time", "public.orders"), ("schema_hash", None)]
    obs["extensions"] = {"plpgsql": "1.0"}
    assert ("extension_missing", None) in kinds(m.compare(exp, obs))


def test_compare_counts_only_manifest_skips_checksums():
    exp = manifest()
    exp["checksum_algorithm"] = None
    for t in exp["tables"].values():
        t["checksum"] = None
    assert m.compare(exp, manifest()) == []


def test_compare_canary_differs_reports_not_comparable_instead_of_changed_rows():
    exp, obs = manifest(), manifest()
    exp["checksum_canary"], obs["checksum_canary"] = "111", "222"
    obs["tables"]["public.orders"]["checksum"] = "999"
    out = m.compare(exp, obs)
    assert kinds(out) == [("checksum_algorithm", None)]
    assert "cannot be compared" in out[0]["message"] and "checksums: false" in out[0]["message"]
    assert m.compare(exp, obs, checksums=False) == []
    obs["checksum_canary"] = "111"
    assert kinds(m.compare(exp, obs)) == [("checksum", "public.orders")]


def test_comparable_needs_the_same_algorithm_and_canary():
    md5 = {"checksum_algorithm": m.MD5_CHECKSUM_ALGORITHM}
    typed = {"checksum_algorithm": m.TYPED_CHECKSUM_ALGORITHM, "checksum_canary": "7"}
    assert m.comparable(md5, dict(md5)) and m.comparable(typed, dict(typed))
    assert m.comparable(md5, dict(md5, checksum_canary=None))  # older manifests have no canary key
    assert not m.comparable(typed, dict(typed, checksum_canary="8"))
    assert not m.comparable(typed, md5) and not m.comparable(md5, typed)
    assert not m.comparable({"checksum_algorithm": None}, {"checksum_algorithm": None})  # counts only


def test_compare_algorithm_mismatch_is_reported_not_checksums():
    obs = manifest()
    obs["checksum_algorithm"] = m.HASH_CHECKSUM_ALGORITHM
    obs["tables"]["public.orders"]["checksum"] = "999"
    assert kinds(m.compare(manifest(), obs)) == [("checksum_algorithm", None)]


# --- parse / validate / stable part -----------------------------------------------------------------

def test_parse_manifest_errors():
    with pytest.raises(ValueError, match="not valid JSON"):
        m.parse_manifest("{nope", "x.json")
    with pytest.raises(ValueError, match="schema_version"):
        m.parse_manifest('{"tables": {}}', "x.json")
    with pytest.raises(ValueError, match="upgrade"):
        m.parse_manifest('{"schema_version": 99, "tables": {}}', "x.json")
    with pytest.raises(ValueError, match="integer 'rows'"):
        m.parse_manifest('{"schema_version": 1, "tables": {"a.b": {}}}', "x.json")
    assert m.parse_manifest(m.manifest_to_text(manifest()))["tables"]["public.orders"]["rows"] == 1000


def test_stable_part_ignores_snapshot_time_only():
    a, b = manifest(), manifest()
    b["created_at"], b["snapshot"] = "later", "11:11:"
    assert m.stable_part(a) == m.stable_part(b)
    b["tables"]["public.orders"]["rows"] = 1
    assert m.stable_part(a) != m.stable_part(b)


# --- collector with fake sessions --------------------------------------------------------------------

class FakeSession:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def execute(self, sql, params=None):
        self.log.append((self.name, sql, params))

    def query(self, sql, params=None):
        self.log.append((self.name, sql, params))
        if sql == m.LIST_TABLES_SQL:
            return [{"name": "public.orders", "bytes": 10}, {"name": "public.fills", "bytes": 99},
                    {"name": "trading.metrics", "bytes": 5}]
        if sql == m.COLUMNS_SQL:
            return [{"tbl": "public.orders", "name": "created_at", "type": TS},
                    {"tbl": "trading.metrics", "name": "time", "type": TS}]
        if sql in (m.CONSTRAINTS_SQL, m.INDEXES_SQL):
            return []
        if sql == m.EXTENSIONS_SQL:
            return [{"name": "plpgsql", "version": "1.0"}]
        if sql == m.SNAPSHOT_SQL:
            return [{"snapshot_time": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "snapshot": "5:5:",
                     "database": "db", "server_version": "15.10", "server_version_num": 150010}]
        if "pg_export_snapshot" in sql:
            return [{"id": "0000-1"}]
        if sql == m.CANARY_SQL:
            return [{"canary": "-5"}]
        if sql.startswith("SELECT count(*)"):
            return [{"rows": 7, "checksum": "42" if "checksum" in sql else None,
                     "max_time": "t" if "max_time" in sql else None}]
        raise AssertionError(sql)

    def one(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def close(self):
        self.log.append((self.name, "close", None))


class FakeConnector:
    def __init__(self):
        self.log = []
        self.n = 0

    def session(self):
        self.n += 1
        return FakeSession(self.log, f"s{self.n}")


def test_collector_parallel_shares_one_snapshot():
    conn = FakeConnector()
    out = m.ManifestCollector(conn, parallel=3).collect()
    assert out["created_at"] == "2025-01-01T00:00:00+00:00"
    assert out["checksum_algorithm"] == m.CHECKSUM_ALGORITHM and out["checksum_canary"] == "-5"
    assert sorted(out["tables"]) == ["public.fills", "public.orders", "trading.metrics"]
    assert out["tables"]["public.orders"] == {"rows": 7, "checksum": "42", "max_time": "t", "time_column": "created_at"}
    assert out["tables"]["public.fills"]["time_column"] is None
    sets = [(s, p) for s, sql, p in conn.log if sql.startswith("SET TRANSACTION SNAPSHOT")]
    assert sorted(s for s, _ in sets) == ["s2", "s3"] and all(p == ("0000-1",) for _, p in sets)
    begins = [s for s, sql, _ in conn.log if sql == m.BEGIN_SQL]
    assert sorted(begins) == ["s1", "s2", "s3"]
    commits = [s for s, sql, _ in conn.log if sql == "COMMIT"]
    assert sorted(commits) == ["s1", "s2", "s3"]


def test_collector_counts_only_given_snapshot_and_missing_table():
    conn = FakeConnector()
    col = m.ManifestCollector(conn, checksums=False, parallel=1)
    out = col.collect(tables=["orders", "nope"], strict=False, snapshot="EXT-1")
    assert list(out["tables"]) == ["public.orders"]
    assert out["checksum_algorithm"] is None and out["tables"]["public.orders"]["checksum"] is None
    assert out["checksum_canary"] is None and not any(sql == m.CANARY_SQL for _, sql, _ in conn.log)
    assert ("s1", "SET TRANSACTION SNAPSHOT %s", ("EXT-1",)) in conn.log
    with pytest.raises(ValueError, match="public.nope"):
        m.ManifestCollector(FakeConnector()).collect(tables=["nope"])


# --- argument spec of connections ----------------------------------------------------------------

def test_postgres_argument_spec_env_fallback(monkeypatch):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    monkeypatch.setenv("PGHOST", "db.example")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGUSER", "agbot")
    monkeypatch.setenv("PGPASSWORD", "s3cr3t-value")
    monkeypatch.setenv("PGDATABASE", "ag_botkit")
    spec = postgres_argument_spec()
    assert spec["login_password"]["no_log"] is True
    res = ArgumentSpecValidator(spec).validate({})
    assert not res.error_messages, res.error_messages
    p = res.validated_parameters
    assert (p["login_host"], p["login_port"], p["login_user"], p["login_db"]) == ("db.example", 6543, "agbot",
                                                                                  "ag_botkit")
    assert "s3cr3t-value" in res._no_log_values
    kw = connection_params(p)
    assert kw["host"] == "db.example" and kw["port"] == 6543 and kw["dbname"] == "ag_botkit"
    assert kw["sslmode"] == "prefer" and "TimeZone=UTC" in kw["options"]
    res = ArgumentSpecValidator(spec).validate({"login_host": "other", "ssl_mode": "require"})
    assert res.validated_parameters["login_host"] == "other"
    assert res.validated_parameters["ssl_mode"] == "require"


def test_module_argument_specs_are_valid():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.agbotkit.dr.plugins.modules import db_integrity, db_manifest

    for mod in (db_manifest, db_integrity):
        res = ArgumentSpecValidator(mod.argument_spec()).validate({"login_host": "h"})
        assert not res.error_messages, res.error_messages
    res = ArgumentSpecValidator(db_manifest.argument_spec()).validate({"parallel": "x"})
    assert res.error_messages


# --- watermark mode (region failover: the DR database went on after the backup) ------------------

def _wm_pair():
    at = "2026-01-01 10:00:00+00"
    exp = {"tables": {
        "public.fills": {"rows": 10, "checksum": "111", "max_time": at, "time_column": "filled_at"},
        "public.orders": {"rows": 5, "checksum": "222", "max_time": at, "time_column": "created_at"},
        "public.positions": {"rows": 3, "checksum": "333", "max_time": None, "time_column": None}},
        "checksum_algorithm": "x", "checksum_canary": "c", "schema_hash": "h"}
    obs = copy.deepcopy(exp)
    for name in ("public.fills", "public.orders"):
        obs["tables"][name]["watermark"] = [exp["tables"][name]["time_column"], exp["tables"][name]["max_time"]]
    obs["tables"]["public.orders"]["checksum"] = "999"   # orders were updated after the backup: not a mismatch
    obs["tables"]["public.positions"]["rows"] = 4        # a table without time column may grow
    obs["tables"]["public.new_table"] = {"rows": 1, "checksum": None, "max_time": None, "time_column": None}
    return exp, obs


def test_watermarks_only_tables_with_a_time():
    exp, _obs = _wm_pair()
    exp["tables"]["public.positions"].update(time_column="updated_at", max_time="2026-01-01 10:00:00+00")
    assert m.watermarks(exp) == {"public.fills": ("filled_at", "2026-01-01 10:00:00+00"),
                                 "public.orders": ("created_at", "2026-01-01 10:00:00+00")}


def test_watermark_mode_accepts_a_database_that_went_on():
    exp, obs = _wm_pair()
    # a modification time is no watermark: positions (updated after the backup) is compared by rows only
    exp["tables"]["public.positions"].update(time_column="updated_at", max_time="2026-01-01 10:00:00+00")
    obs["tables"]["public.positions"].update(time_column="updated_at", max_time="2026-01-01 11:00:00+00")
    assert m.compare(exp, obs, watermark=True, append_only=["fills"]) == []
    # the same data compared without watermark mode: the later table and the updated rows are mismatches
    kinds = {x["kind"] for x in m.compare(exp, obs)}
    assert {"extra_table", "checksum", "rows"} <= kinds


def test_watermark_mode_fails_on_missing_rows_changed_append_only_rows_and_missing_tables():
    exp, obs = _wm_pair()
    obs["tables"]["public.fills"]["rows"] = 9
    obs["tables"]["public.fills"]["checksum"] = "112"
    obs["tables"]["public.positions"]["rows"] = 2
    del obs["tables"]["public.orders"]
    found = {(x["kind"], x["table"]) for x in m.compare(exp, obs, watermark=True, append_only=["public.fills"])}
    assert found == {("rows", "public.fills"), ("checksum", "public.fills"), ("rows", "public.positions"),
                     ("missing_table", "public.orders")}


def test_stats_sql_up_to_a_watermark_binds_the_time():
    sql = m.table_stats_sql("fills", "filled_at", False, upto=True)
    assert sql.endswith('WHERE agbot__r."filled_at" <= %s::timestamptz')
    assert "WHERE" not in m.table_stats_sql("fills", "filled_at", False)

"""db_manifest and db_integrity against a real PostgreSQL 15, run through ansible itself.

Uses the lab's PostgreSQL when the lab is up (.lab/lab.json), otherwise starts a throwaway
cluster (initdb as the postgres OS user into a temp dir, a free loopback port, superuser agbot
with a password) for this module only. Every test works in its own database cloned from a seeded
template, so damage in one test never leaks into another.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
VENV_BIN = ROOT / ".venv" / "bin"
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "db_modules.yml"
MODULES = ["db_manifest", "db_integrity", "kill_switch", "kill_switch_info"]

sys.path.insert(0, str(ROOT / ".collections"))
import psycopg  # noqa: E402

SEED_SQL = """
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    symbol text NOT NULL,
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty numeric(18, 8) NOT NULL,
    price double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    meta jsonb
);
CREATE INDEX orders_symbol_created_idx ON orders (symbol, created_at);
CREATE TABLE fills (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    qty numeric NOT NULL,
    filled_at timestamptz NOT NULL
);
CREATE SCHEMA trading;
CREATE TABLE trading.metrics (time timestamptz NOT NULL, name text NOT NULL, value double precision);
INSERT INTO orders (symbol, side, qty, price, created_at, meta)
SELECT 'BTC-USD-' || (g % 5), CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, g / 7.0, 30000 + g * 0.1,
       timestamptz '2025-01-01 00:00:00+00' + g * interval '1 s', jsonb_build_object('n', g)
FROM generate_series(1, 2000) g;
INSERT INTO fills (order_id, qty, filled_at)
SELECT g, 1, timestamptz '2025-01-01 00:00:00+00' + g * interval '2 s' FROM generate_series(1, 1000) g;
INSERT INTO trading.metrics SELECT timestamptz '2025-01-01 00:00:00+00' + g * interval '1 min', 'pnl', g * 1.5
FROM generate_series(1, 500) g;
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def pg():
    """Connection settings of a superuser on a PostgreSQL 15 server: the lab's or a throwaway one."""
    lab_json = Path(os.environ.get("LAB_DIR", ROOT / ".lab")) / "lab.json"
    if lab_json.exists():
        env = json.loads(lab_json.read_text())["env"]
        yield {"host": env["PGHOST"], "port": int(env["PGPORT"]), "user": env["PGUSER"],
               "password": env["PGPASSWORD"], "own": False}
        return
    if not (PGBIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {PGBIN}")
    tmp = Path(tempfile.mkdtemp(prefix="agbot-pg-"))
    shutil.chown(tmp, "postgres")
    password = "pw-" + secrets.token_hex(8)
    pwfile = tmp / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres")
    data = tmp / "data"
    port = _free_port()
    _as_postgres(str(PGBIN / "initdb"), "-D", str(data), "-U", "agbot", "--pwfile", str(pwfile),
                 "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-sync")
    _as_postgres(str(PGBIN / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-w", "-t", "60",
                 "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "agbot", "password": password, "own": True}
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _connect(pg, dbname="postgres"):
    return psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                           dbname=dbname, autocommit=True)


@pytest.fixture(scope="module")
def seed(pg):
    """A template database with the small trading schema; dropped at the end."""
    name = f"agbot_modtest_seed_{secrets.token_hex(3)}"
    with _connect(pg) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    with _connect(pg, name) as c:
        c.execute(SEED_SQL)
        c.execute("ANALYZE")
    made = []
    yield {"name": name, "made": made}
    with _connect(pg) as c:
        for db in [*made, name]:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture
def db(pg, seed):
    """A fresh copy of the seed database for one test."""
    name = f"agbot_modtest_{secrets.token_hex(4)}"
    with _connect(pg) as c:
        c.execute('CREATE DATABASE "{}" TEMPLATE "{}"'.format(name, seed["name"]))
    seed["made"].append(name)
    return name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbmod")
    (d / "hosts.ini").write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                                 % (VENV_BIN / "python"))
    return d


def _env(pg, dbname: str | None) -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="minimal",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0",
               PGHOST=pg["host"], PGPORT=str(pg["port"]), PGUSER=pg["user"], PGPASSWORD=pg["password"],
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if dbname:
        env["PGDATABASE"] = dbname
    return env


def adhoc(pg, workdir, dbname: str, module: str, args: dict, check: bool = False) -> tuple[dict, str]:
    """Run `ansible localhost -m agbotkit.dr.<module>`; returns (result, full output)."""
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", str(workdir / "hosts.ini"), "-m", "agbotkit.dr." + module]
    if args:
        cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(pg, dbname), capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout
    start = out.find("localhost | ")
    assert start >= 0, proc.stdout + proc.stderr
    brace = out.index("{", start)
    result = json.loads(out[brace:])
    if "FAILED!" in out[start:brace]:  # the minimal callback says so in the header, not in the JSON
        result["failed"] = True
    return result, proc.stdout + proc.stderr


def sql(pg, dbname: str, *statements: str) -> None:
    with _connect(pg, dbname) as c:
        for s in statements:
            c.execute(s)


def manifest_of(pg, workdir, dbname, **args) -> dict:
    res, out = adhoc(pg, workdir, dbname, "db_manifest", args)
    assert not res.get("failed"), out
    return res["manifest"]


# --- tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "agbotkit.dr." + module], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "agbotkit.dr." + module in proc.stdout
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES", "ATTRIBUTES"):
        assert section in proc.stdout, section
    assert "ERROR" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr


def test_playbook_unchanged_database_matches(pg, db, workdir):
    """Check mode writes no file; apply writes once; integrity with amcheck is clean (asserted in the playbook)."""
    scratch = workdir / ("pb-" + db)
    scratch.mkdir()
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.ini"), str(PLAYBOOK),
           "-e", json.dumps({"db_modules_dir": str(scratch)})]
    env = dict(_env(pg, db), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "failed=0" in proc.stdout
    saved = json.loads((scratch / "manifest.json").read_text())
    assert saved["tables"]["public.orders"]["rows"] == 2000
    assert saved["tables"]["public.orders"]["time_column"] == "created_at"
    assert saved["tables"]["trading.metrics"]["time_column"] == "time"
    assert saved["tables"]["public.fills"]["max_time"] == "2025-01-01 00:33:20+00"
    assert pg["password"] not in proc.stdout + proc.stderr


def test_check_mode_with_dest_writes_nothing(pg, db, workdir):
    dest = workdir / ("check-" + db + ".json")
    res, out = adhoc(pg, workdir, db, "db_manifest", {"dest": str(dest)}, check=True)
    assert res["changed"] is True, out
    assert not dest.exists()
    assert res["queries"][0] == "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


def test_counts_only_and_table_subset(pg, db, workdir):
    m = manifest_of(pg, workdir, db, tables=["orders", "trading.metrics"], checksums=False, parallel=1)
    assert sorted(m["tables"]) == ["public.orders", "trading.metrics"]
    assert m["checksum_algorithm"] is None and m["tables"]["public.orders"]["checksum"] is None


def test_hash_algorithm_round_trip(pg, db, workdir):
    m = manifest_of(pg, workdir, db, checksum_algorithm="hash")
    assert m["checksum_algorithm"] == "sum64-hashrecord-v1"
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False})
    assert res["ok"] is True, out
    sql(pg, db, "UPDATE fills SET qty = 2 WHERE id = 7")
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "fail_on_mismatch": False})
    assert [(x["kind"], x["table"]) for x in res["mismatches"]] == [("checksum", "public.fills")]


ODD_TYPES_SQL = """
CREATE TYPE mood AS ENUM ('calm', 'tense', 'panic');
CREATE DOMAIN positive_qty AS numeric CHECK (VALUE > 0);
CREATE TYPE level AS (price numeric, qty numeric);
CREATE TABLE odd (
    id int PRIMARY KEY, m mood, moods mood[], j json, jb jsonb, q positive_qty, lv level, p point,
    tags text[], b bytea, u uuid, iv interval, f real
);
INSERT INTO odd SELECT g, (ARRAY['calm', 'tense', 'panic'])[1 + g % 3]::mood, ARRAY['calm', 'panic']::mood[],
       json_build_object('g', g), jsonb_build_object('g', g), g + 0.5, ROW(g * 1.5, g)::level, point(g, -g),
       ARRAY['a' || g, NULL], decode(md5(g::text), 'hex'), md5(g::text)::uuid, g * interval '1 min', g / 3.0
FROM generate_series(1, 300) g;
INSERT INTO odd (id) VALUES (0);
"""


def _restore_copy(pg, db: str, seed) -> str:
    """pg_dump | pg_restore of db into a new database (enum and type OIDs change on the way)."""
    target = db + "_copy"
    sql(pg, "postgres", f'CREATE DATABASE "{target}" TEMPLATE template0')
    seed["made"].append(target)
    env = dict(os.environ, PGPASSWORD=pg["password"])
    conn = ["-h", pg["host"], "-p", str(pg["port"]), "-U", pg["user"]]
    dump = subprocess.run([str(PGBIN / "pg_dump"), *conn, "-Fc", db], env=env, capture_output=True, check=True)
    subprocess.run([str(PGBIN / "pg_restore"), *conn, "-d", target], input=dump.stdout, env=env,
                   capture_output=True, check=True)
    return target


def test_typed_checksums_survive_dump_and_restore_of_every_kind_of_column(pg, db, workdir, seed):
    sql(pg, db, ODD_TYPES_SQL)
    m = manifest_of(pg, workdir, db)
    assert m["checksum_algorithm"] == "sum64-typedhash-v2" and m["checksum_canary"]
    target = _restore_copy(pg, db, seed)
    oid_sql = "SELECT oid FROM pg_type WHERE typname = 'mood'"
    with _connect(pg, target) as c, _connect(pg, db) as source:  # the enum really got new OIDs on the way
        assert c.execute(oid_sql).fetchone() != source.execute(oid_sql).fetchone()
    res, out = adhoc(pg, workdir, target, "db_integrity", {"manifest": m, "amcheck": False})
    assert res["ok"] is True, out
    assert res["report"]["public.odd"]["checksum_ok"] is True
    # one changed enum, json, composite, point and array value are each seen
    for change in ("UPDATE odd SET m = 'panic' WHERE id = 1", "UPDATE odd SET j = '{\"g\": 0}' WHERE id = 2",
                   "UPDATE odd SET lv = ROW(1, 1) WHERE id = 3", "UPDATE odd SET p = point(0, 0) WHERE id = 4",
                   "UPDATE odd SET tags = ARRAY['x'] WHERE id = 5", "UPDATE odd SET m = 'calm' WHERE id = 0"):
        copy = target + "_c"
        sql(pg, "postgres", f'DROP DATABASE IF EXISTS "{copy}"', f'CREATE DATABASE "{copy}" TEMPLATE "{target}"')
        seed["made"].append(copy)
        sql(pg, copy, change)
        res, out = adhoc(pg, workdir, copy, "db_integrity", {"manifest": m, "amcheck": False,
                                                              "fail_on_mismatch": False})
        assert [(x["kind"], x["table"]) for x in res["mismatches"]] == [("checksum", "public.odd")], (change, out)


@pytest.mark.parametrize("swap", [
    # two orders trade their quantities, two fills their order ids: every column's total stays the same
    "UPDATE orders o SET qty = x.qty FROM (VALUES (11, (SELECT qty FROM orders WHERE id = 12)), "
    "(12, (SELECT qty FROM orders WHERE id = 11))) x(id, qty) WHERE o.id = x.id",
    "UPDATE fills f SET order_id = x.o FROM (VALUES (21, (SELECT order_id FROM fills WHERE id = 22)), "
    "(22, (SELECT order_id FROM fills WHERE id = 21))) x(id, o) WHERE f.id = x.id",
])
def test_values_swapped_between_rows_are_seen(pg, db, workdir, swap):
    """hash_record_extended is linear in the column hashes; a plain sum of it misses this (sum64-typedhash-v1)."""
    m = manifest_of(pg, workdir, db)
    sql(pg, db, swap)
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "fail_on_mismatch": False})
    kinds = [(x["kind"], x["table"]) for x in res["mismatches"]]
    assert len(kinds) == 1 and kinds[0][0] == "checksum", out


def test_db_load_pauses_autovacuum_and_puts_every_table_back_as_it_was(pg, db, workdir, seed):
    """db_dump then db_load: autovacuum off only while loading, a table's own setting kept, ANALYZE done."""
    sql(pg, db, "ALTER TABLE fills SET (autovacuum_enabled = false)")
    dest = workdir / ("dump-" + db)
    res, out = adhoc(pg, workdir, db, "db_dump", {"backup_id": "b1", "dest": str(dest), "login_db": db})
    assert res.get("changed") is True and set(res["timings"]) == {"pg_dump", "manifest", "sha256"}, out
    assert oct(dest.stat().st_mode & 0o777) == "0o700"
    target = db + "_load"
    seed["made"].append(target)
    res, out = adhoc(pg, workdir, db, "db_load", {"backup_path": str(dest / "b1"), "target_db": target,
                                                  "login_db": "postgres", "jobs": 2})
    assert res.get("changed") is True, out
    assert res["autovacuum_paused"] == ["public.orders", "trading.metrics"], out  # fills set it itself
    assert set(res["timings"]) == {"create", "pre_data", "load", "analyze", "mark"}, out
    with _connect(pg, target) as c:
        options = dict(c.execute(
            "SELECT c.oid::regclass::text, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('public', 'trading')").fetchall())
        analyzed = {r[0] for r in c.execute("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")}
        counts = c.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM fills)").fetchone()
    assert options == {"orders": None, "fills": ["autovacuum_enabled=false"], "trading.metrics": None}, options
    assert analyzed == {"orders", "fills", "metrics"}, analyzed
    assert counts == (2000, 1000)
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest_path": str(dest / "b1" / "manifest.json"),
                                                       "login_db": target, "amcheck_install": True})
    assert res["ok"] is True, out


def test_whole_row_hash_trips_on_enums_after_restore(pg, db, workdir, seed):
    """Why the typed algorithm exists: the older whole-row hash calls an identical restore changed."""
    sql(pg, db, ODD_TYPES_SQL.replace(" j json,", "").replace(" p point,", "").replace(
        "json_build_object('g', g), ", "").replace("point(g, -g),", ""))
    m = manifest_of(pg, workdir, db, checksum_algorithm="hash")
    target = _restore_copy(pg, db, seed)
    res, _ = adhoc(pg, workdir, target, "db_integrity", {"manifest": m, "amcheck": False, "fail_on_mismatch": False})
    assert ("checksum", "public.odd") in [(x["kind"], x["table"]) for x in res["mismatches"]]


def test_typed_checksums_on_a_server_that_hashes_differently_are_not_comparable(pg, db, workdir):
    m = manifest_of(pg, workdir, db)
    m["checksum_canary"] = "12345"  # as if the manifest came from a server of the other byte order
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False})
    assert res.get("failed") is True, out
    assert [x["kind"] for x in res["mismatches"]] == ["checksum_algorithm"]
    assert "cannot be compared" in res["msg"] and "checksums: false" in res["msg"]
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "checksums": False})
    assert res["ok"] is True, out


def test_deleted_row_fails_naming_the_table(pg, db, workdir):
    m = manifest_of(pg, workdir, db)
    sql(pg, db, "DELETE FROM fills WHERE id = 500")
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck_install": True})
    assert res.get("failed") is True, out
    assert "public.fills: 999 rows, manifest says 1000 (-1)" in res["msg"]
    assert res["report"]["public.fills"]["rows"] == 999
    assert res["report"]["public.fills"]["expected_rows"] == 1000
    assert res["report"]["public.fills"]["checksum_ok"] is False
    assert res["report"]["public.orders"]["checksum_ok"] is True
    assert {x["table"] for x in res["mismatches"]} == {"public.fills"}


def test_updated_value_fails_on_checksum(pg, db, workdir):
    m = manifest_of(pg, workdir, db)
    sql(pg, db, "UPDATE orders SET price = price + 0.01 WHERE id = 1234")
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False})
    assert res.get("failed") is True, out
    assert "public.orders: row checksum differs from the manifest" in res["msg"]
    assert res["report"]["public.orders"]["rows"] == res["report"]["public.orders"]["expected_rows"] == 2000
    # counts only does not see an in-place update
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "checksums": False})
    assert res["ok"] is True


def test_dropped_table_and_index_detected(pg, db, workdir):
    m = manifest_of(pg, workdir, db)
    sql(pg, db, "DROP TABLE trading.metrics", "DROP INDEX orders_symbol_created_idx",
        "CREATE TABLE public.scratch (x int)")
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck_install": True,
                                                       "fail_on_mismatch": False})
    assert res.get("failed") is not True and res["ok"] is False, out
    kinds = {(x["kind"], x["table"]) for x in res["mismatches"]}
    assert ("missing_table", "trading.metrics") in kinds
    assert ("extra_table", "public.scratch") in kinds
    assert ("schema_hash", None) in kinds  # the dropped index
    assert res["report"]["trading.metrics"]["present"] is False
    assert res["report"]["trading.metrics"]["amcheck"] == "missing"


def test_missing_manifest_file_says_what_to_do(pg, db, workdir):
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"manifest_path": str(workdir / "nope.json")})
    assert res["failed"] is True and "no such file" in res["msg"]


def test_amcheck_required_unless_installed(pg, db, workdir):
    res, _ = adhoc(pg, workdir, db, "db_integrity", {})
    assert res["failed"] is True and "amcheck_install: true" in res["msg"]
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"amcheck_install": True}, check=True)
    assert res["changed"] is False and res["ok"] is True and "amcheck" not in res
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"amcheck_install": True})
    assert res["changed"] is True and res["ok"] is True
    heaps = {k for k, v in res["amcheck"].items() if v["kind"] == "heap"}
    btrees = {k for k, v in res["amcheck"].items() if v["kind"] == "btree"}
    assert {"public.orders", "public.fills", "trading.metrics"} <= heaps
    assert {"public.orders_pkey", "public.orders_symbol_created_idx", "public.fills_pkey"} <= btrees
    assert all(v["status"] == "ok" for v in res["amcheck"].values())
    assert any("verify_heapam" in q for q in res["queries"])
    assert any("bt_index_check" in q for q in res["queries"])
    res, _ = adhoc(pg, workdir, db, "db_integrity", {})
    assert res["changed"] is False and res["ok"] is True


@pytest.fixture(scope="module")
def timescaledb_standin():
    proc = subprocess.run([str(ROOT / "dev/lab/timescaledb_standin/install.sh")], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot install the timescaledb stand-in: {proc.stderr.strip()}")
    return proc.stdout


def test_timescaledb_standin_branch(pg, db, workdir, timescaledb_standin):
    sql(pg, db, "CREATE EXTENSION timescaledb", "SELECT create_hypertable('trading.metrics', 'time')")
    m = manifest_of(pg, workdir, db)
    assert m["extensions"]["timescaledb"] == "2.14.2"
    assert m["hypertables"] == {"trading.metrics": {"num_chunks": 1}}
    assert not any(t.startswith("_timescaledb") for t in m["tables"])
    res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck_install": True})
    assert res["ok"] is True, out
    assert res["timescaledb"] == {"installed": True, "version": "2.14.2"}
    assert res["hypertables"]["trading.metrics"]["ok"] is True
    assert res["hypertables"]["trading.metrics"]["chunks_checked"] == 1
    assert "_timescaledb_internal._hyper_1_1_chunk" in res["amcheck"]
    # pre/post restore flags work
    with _connect(pg, db) as c:
        assert c.execute("SELECT timescaledb_pre_restore()").fetchone()[0] is True
        assert c.execute("SELECT current_setting('timescaledb.restoring')").fetchone()[0] == "on"
        assert c.execute("SELECT timescaledb_post_restore()").fetchone()[0] is True
        assert c.execute("SELECT current_setting('timescaledb.restoring')").fetchone()[0] == "off"
    # a lost chunk is reported
    sql(pg, db, "DROP TABLE _timescaledb_internal._hyper_1_1_chunk")
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "fail_on_mismatch": False})
    assert res["ok"] is False
    assert any(x["kind"] == "hypertable" and "chunk(s) missing" in x["message"] for x in res["mismatches"])


def test_extension_version_mismatch_reported(pg, db, workdir, timescaledb_standin):
    sql(pg, db, "CREATE EXTENSION timescaledb")
    m = manifest_of(pg, workdir, db)
    m["extensions"]["timescaledb"] = "2.15.0"
    res, _ = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "fail_on_mismatch": False})
    assert [x["message"] for x in res["mismatches"]] == [
        "extension timescaledb is version 2.14.2, manifest says 2.15.0"]


def test_manifest_is_one_snapshot_under_concurrent_writes(pg, db, workdir):
    """Rows committed while the manifest runs never make its tables disagree (parallel sessions share one snapshot)."""
    import threading

    stop = threading.Event()

    def writer():
        with _connect(pg, db) as c:
            while not stop.is_set():
                c.execute("WITH o AS (INSERT INTO orders (symbol, side, qty) VALUES ('X', 'buy', 1) RETURNING id) "
                          "INSERT INTO fills (order_id, qty, filled_at) SELECT id, 1, now() FROM o")
                time.sleep(0.002)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        m = manifest_of(pg, workdir, db, parallel=3)
    finally:
        stop.set()
        t.join(10)
    # the writer adds one order and one fill per transaction: equal growth on both tables in one snapshot
    assert m["tables"]["public.orders"]["rows"] - 2000 == m["tables"]["public.fills"]["rows"] - 1000


# --- kill_switch with confirm_db: a stand-in bot over real HTTP, writes into the real database -------------

@pytest.fixture
def fake_bot(pg, db):
    """A bot whose state is flipped over HTTP and whose writer keeps inserting orders while `writing` is set."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    token = "bot-" + secrets.token_hex(6)
    bot = {"state": "trading", "writing": threading.Event(), "stop": threading.Event(), "token": token}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._send(200, {"state": bot["state"], "since": "2025-01-01T00:00:00Z", "reason": None})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != "Bearer " + token:
                return self._send(401, {"error": "unauthorized"})
            bot["state"] = "halted" if self.path.endswith("/trigger") else "trading"
            return self._send(200, {"state": bot["state"]})

    def writer():
        with _connect(pg, db) as c:
            while not bot["stop"].is_set():
                if bot["writing"].is_set():
                    c.execute("INSERT INTO orders (symbol, side, qty) VALUES ('X', 'buy', 1)")
                time.sleep(0.02)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threads = [threading.Thread(target=server.serve_forever, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    bot["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield bot
    bot["stop"].set()
    server.shutdown()
    server.server_close()
    for t in threads:
        t.join(10)


def test_kill_switch_confirms_halt_in_the_database(pg, db, workdir, fake_bot):
    args = {"url": fake_bot["url"], "token": fake_bot["token"], "state": "triggered", "settle_seconds": 0.5,
            "confirm_db": {}, "confirm_tables": ["orders", "fills"], "retries": 0}
    res, out = adhoc(pg, workdir, db, "kill_switch", args)
    assert res["changed"] is True and res["halt_confirmed"] is True, out
    assert res["confirmed_by"] == ["api", "database"]
    assert res["rows_during_settle"] == {"public.orders": 0, "public.fills": 0}
    assert fake_bot["token"] not in out and pg["password"] not in out

    # the bot says halted but something keeps writing: the module must not believe it
    fake_bot["writing"].set()
    res, out = adhoc(pg, workdir, db, "kill_switch", args)
    assert res.get("failed") is True and res["changed"] is False, out
    assert "the bot reports halted but" in res["msg"] and "public.orders" in res["msg"]
    assert "stop it at the source" in res["msg"]
    assert res["rows_during_settle"]["public.orders"] > 0

    # reset, and writes resume
    res, out = adhoc(pg, workdir, db, "kill_switch", dict(args, state="reset", confirm_resume=True, settle_seconds=3))
    assert res["changed"] is True and res["resume_confirmed"] is True, out
    fake_bot["writing"].clear()


def test_a_scan_blocked_by_a_lock_says_which_lock_it_waited_for(pg, db, workdir):
    """Issue 9: every session has lock_timeout; the failure names the relation, the lock and who holds it."""
    m = manifest_of(pg, workdir, db)
    with _connect(pg, db) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        res, out = adhoc(pg, workdir, db, "db_integrity", {"manifest": m, "amcheck": False, "lock_timeout": 1})
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert res.get("failed") is True, out
    assert "waited longer than lock_timeout (1s)" in res["msg"]
    assert "public.fills held in AccessExclusiveLock" in res["msg"]
    assert waited < 60


def test_database_names_with_equals_and_spaces_reach_pg_dump_as_names(pg, workdir, seed):
    """Issue 9: a name like 'a x=y' must not be read by libpq as connection options."""
    name = f"agbot {secrets.token_hex(2)} host=nowhere"
    with _connect(pg) as c:
        c.execute('CREATE DATABASE "{}" TEMPLATE "{}"'.format(name, seed["name"]))
    seed["made"].append(name)
    dest = workdir / ("dump-eq-" + secrets.token_hex(2))
    res, out = adhoc(pg, workdir, name, "db_dump", {"backup_id": "b1", "dest": str(dest), "login_db": name})
    assert res.get("changed") is True, out
    assert res["manifest"]["database"] == name
    target = name + " restored"
    seed["made"].append(target)
    m = json.loads((dest / "b1" / "manifest.json").read_text())
    res, out = adhoc(pg, workdir, name, "db_load", {"backup_path": str(dest / "b1"), "target_db": target,
                                                    "login_db": "postgres", "jobs": 1})
    assert res.get("changed") is True, out
    with _connect(pg, target) as c:
        assert c.execute("SELECT count(*) FROM fills").fetchone()[0] == m["tables"]["public.fills"]["rows"]

#!/usr/bin/env python3
"""Seed the lab's ag_botkit database with the trading schema and deterministic data.

    .venv/bin/python dev/lab/seed_db.py                    # scale small (or $LAB_DB_SCALE)
    .venv/bin/python dev/lab/seed_db.py --scale bench      # ~5 M metrics, 1 M orders, 1 M fills, ~1.3 GB
    .venv/bin/python dev/lab/seed_db.py --reset --orders 20000 --fills 20000 --metrics 100000

Connection from the PG* environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)
or the options; the password falls back to <lab-dir>/secrets.json `db_password`.
Without --reset it is idempotent: an already seeded database is left alone.
All rows are generated set-based (INSERT ... SELECT generate_series) in one transaction; values
are a pure function of the row number, times spread over the last days up to now().
Exit codes: 0 seeded or already seeded, 1 error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "dev" / "lab" / "sql" / "schema.sql"

SCALES = {
    "small": {"metrics": 20_000, "orders": 5_000, "fills": 5_000, "days": 2},
    "medium": {"metrics": 500_000, "orders": 100_000, "fills": 100_000, "days": 7},
    "bench": {"metrics": 5_000_000, "orders": 1_000_000, "fills": 1_000_000, "days": 30},
}

# symbol, base, quote, tick size, reference price
MARKETS = [
    ("BTC-USD", "BTC", "USD", "0.01", 64000),
    ("ETH-USD", "ETH", "USD", "0.01", 3200),
    ("SOL-USD", "SOL", "USD", "0.001", 150),
    ("XRP-USD", "XRP", "USD", "0.0001", 0.6),
    ("ADA-USD", "ADA", "USD", "0.0001", 0.45),
    ("DOGE-USD", "DOGE", "USD", "0.00001", 0.15),
    ("AVAX-USD", "AVAX", "USD", "0.001", 35),
    ("LINK-USD", "LINK", "USD", "0.001", 14),
]

METRIC_NAMES = [
    "bot.pnl_usd", "bot.equity_usd", "bot.open_orders", "bot.order_latency_ms", "bot.fill_rate",
    "rtds.tick_lag_ms", "rtds.ticks_per_s", "risk.exposure_usd", "risk.drawdown_pct",
    "exchange.api_latency_ms", "exchange.rate_limit_remaining", "db.write_latency_ms",
]

_M = 1_000_003  # prime modulus of the pseudo-random expressions
_MULT = [7919, 104729, 611953, 15485863 % _M, 32452843 % _M, 49979687 % _M, 86028121 % _M]


def rnd(col: str, k: int) -> str:
    """SQL expression: a deterministic pseudo-random float in [0, 1) from integer column `col`."""
    a = _MULT[k % len(_MULT)]
    return f"(((({col})::bigint * {a} + {k * 7 + 3}) % {_M}) * 48271 % {_M})::float8 / {_M}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default=os.environ.get("LAB_DB_SCALE", "small"), choices=sorted(SCALES),
                    help="preset row counts (default small, or $LAB_DB_SCALE)")
    ap.add_argument("--metrics", type=int, help="metrics rows (overrides the scale)")
    ap.add_argument("--orders", type=int, help="orders rows (overrides the scale)")
    ap.add_argument("--fills", type=int, help="fills rows (overrides the scale)")
    ap.add_argument("--days", type=float, help="time span of the data, ending now")
    ap.add_argument("--reset", action="store_true", help="drop and recreate the database first")
    ap.add_argument("--host", default=os.environ.get("PGHOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PGPORT", "55432")))
    ap.add_argument("--user", default=os.environ.get("PGUSER", "agbot"))
    ap.add_argument("--dbname", default=os.environ.get("PGDATABASE", "ag_botkit"))
    ap.add_argument("--maintenance-db", default="postgres", help="database to connect to for DROP/CREATE")
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ROOT / ".lab")))
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args(argv)
    preset = SCALES[args.scale]
    for key in ("metrics", "orders", "fills", "days"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if min(args.metrics, args.orders, args.fills) < 0 or args.days <= 0:
        ap.error("counts must be >= 0 and --days > 0")
    if args.fills and not args.orders:
        ap.error("fills need orders")
    return args


def password(args: argparse.Namespace) -> str | None:
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    try:
        return json.loads((args.lab_dir / "secrets.json").read_text()).get("db_password")
    except (OSError, ValueError):
        return None


def connect(args: argparse.Namespace, dbname: str, autocommit: bool = False) -> psycopg.Connection:
    kw = {"host": args.host, "port": args.port, "user": args.user, "dbname": dbname, "connect_timeout": 10}
    pw = password(args)
    if pw:
        kw["password"] = pw
    return psycopg.connect(autocommit=autocommit, **kw)


def ensure_database(args: argparse.Namespace) -> bool:
    """Create (after dropping, with --reset) the database; True if it was created now."""
    with connect(args, args.maintenance_db, autocommit=True) as conn:
        ident = sql.Identifier(args.dbname)
        if args.reset:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
            return True
    return False


def already_seeded(conn: psycopg.Connection) -> dict | None:
    if conn.execute("SELECT to_regclass('public.markets') IS NOT NULL").fetchone()[0] is False:
        return None
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM markets)").fetchone()[0]:
        return None
    return counts(conn)


def counts(conn: psycopg.Connection) -> dict:
    out = {}
    for table in ("markets", "orders", "fills", "positions", "metrics"):
        out[table] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    return out


def seed(conn: psycopg.Connection, args: argparse.Namespace) -> None:
    nm = len(MARKETS)
    no, nf, nmet = args.orders, args.fills, args.metrics
    span = f"interval '{args.days * 86400:.3f} seconds'"
    tables, _, indexes = SCHEMA.read_text().partition("-- @indexes")
    conn.execute(tables)
    # one anchor for the whole seed: data ends one second before now()
    t_end = conn.execute("SELECT date_trunc('milliseconds', now()) - interval '1 second'").fetchone()[0]

    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO markets (id, symbol, base, quote, tick_size, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s - interval '365 days')",
            [(i + 1, s, b, q, t, t_end) for i, (s, b, q, t, _p) in enumerate(MARKETS)],
        )
    conn.execute("SELECT setval(pg_get_serial_sequence('markets', 'id'), %s)", (nm,))

    t0 = f"'{t_end.isoformat()}'::timestamptz"
    ref_prices = "ARRAY[" + ",".join(str(m[4]) for m in MARKETS) + "]::numeric[]"
    symbols = "ARRAY[" + ",".join(f"'{m[0]}'" for m in MARKETS) + "]"
    names = "ARRAY[" + ",".join(f"'{n}'" for n in METRIC_NAMES) + "]"

    # orders: class id % 10 == 0 cancelled, == 1 open, else "fillable"; the k-th fillable order
    # (k = id/10*8 + id%10 - 2) is filled when it receives at least one fill (k < fills).
    n_fillable = (no // 10) * 8 + max(0, no % 10 - 1)

    def o_price(i: str) -> str:
        return f"round(({ref_prices})[1 + {i} % {nm}] * (0.99 + 0.02 * {rnd(i, 1)})::numeric, 6)"

    def o_qty(i: str) -> str:
        return f"round((0.001 + 2 * {rnd(i, 2)})::numeric, 6)"

    def o_time(i: str) -> str:
        return f"({t0} - {span} * (({no} - {i})::float8 / greatest({no}, 1)))"

    status = (f"CASE WHEN i % 10 = 0 THEN 'cancelled' WHEN i % 10 = 1 THEN 'open' "
              f"WHEN (i / 10) * 8 + i % 10 - 2 < {nf} THEN 'filled' ELSE 'open' END")
    if no:
        conn.execute(
            f"""INSERT INTO orders (id, market_id, side, order_type, price, qty, status, strategy,
                                    client_order_id, created_at, updated_at)
                SELECT i, 1 + i % {nm}, CASE WHEN (i / {nm}) % 2 = 0 THEN 'buy' ELSE 'sell' END,
                       CASE WHEN i % 7 = 0 THEN 'market' ELSE 'limit' END,
                       {o_price('i')}, {o_qty('i')}, {status},
                       (ARRAY['mm','arb','trend'])[1 + i % 3], 'seed-' || lpad(i::text, 9, '0'),
                       {o_time('i')}, {o_time('i')} + interval '1 millisecond' * (i % 900)
                FROM generate_series(1, {no}) AS i"""  # noqa: S608 - generated from constants
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), %s)", (no,))

    if nf:
        if n_fillable == 0:
            raise SystemExit("no fillable orders for the fills (need --orders >= 3)")
        # fill j goes to the k-th fillable order, k = (j-1) % n_fillable; fills per order spread evenly
        per, extra = divmod(nf, n_fillable)
        k = f"((j - 1) % {n_fillable})"
        oid = f"(({k} / 8) * 10 + 2 + {k} % 8)"
        nfor = f"({per} + CASE WHEN {k} < {extra} THEN 1 ELSE 0 END)"
        conn.execute(
            f"""INSERT INTO fills (id, order_id, price, qty, fee, liquidity, filled_at)
                SELECT j, o, p, q, round(p * q * 0.0004, 8),
                       CASE WHEN j % 3 = 0 THEN 'taker' ELSE 'maker' END,
                       least({o_time('o')} + interval '1 millisecond' * (20 + j % 400), now())
                FROM (SELECT j, {oid} AS o, {o_price(oid)} AS p,
                             round({o_qty(oid)} / {nfor}, 8) AS q
                      FROM generate_series(1, {nf}) AS j) s"""  # noqa: S608 - generated from constants
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('fills', 'id'), %s)", (nf,))

    conn.execute(
        """INSERT INTO positions (market_id, qty, avg_price, realized_pnl, updated_at)
           SELECT m.id, coalesce(sum(CASE WHEN o.side = 'buy' THEN o.qty ELSE -o.qty END), 0),
                  coalesce(round(avg(o.price), 8), 0), 0, coalesce(max(o.updated_at), m.created_at)
           FROM markets m LEFT JOIN orders o ON o.market_id = m.id AND o.status = 'filled'
           GROUP BY m.id, m.created_at"""
    )

    if nmet:
        span_m = f"({t0} - {span} * (({nmet} - i)::float8 / {nmet}))"
        conn.execute(
            f"""INSERT INTO metrics (time, name, value, labels)
                SELECT {span_m}, ({names})[1 + i % {len(METRIC_NAMES)}],
                       round((1000 * {rnd('i', 3)})::numeric, 4)::float8,
                       jsonb_build_object('market', ({symbols})[1 + (i / {len(METRIC_NAMES)}) % {nm}],
                                          'host', 'minibot-' || (i % 3), 'env', 'production')
                FROM generate_series(1, {nmet}) AS i"""  # noqa: S608 - generated from constants
        )
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    conn.execute("-- " + indexes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    try:
        created = ensure_database(args)
        with connect(args, args.dbname) as conn:
            found = None if created else already_seeded(conn)
            if found is not None:
                result = {"seeded": False, "database": args.dbname, "counts": found,
                          "message": f"{args.dbname} is already seeded; nothing to do (use --reset to reseed)"}
            else:
                seed(conn, args)
                conn.commit()
                conn.autocommit = True
                conn.execute("ANALYZE")
                result = {"seeded": True, "database": args.dbname, "counts": counts(conn)}
            size = conn.execute("SELECT pg_database_size(current_database()), "
                                "pg_size_pretty(pg_database_size(current_database()))").fetchone()
    except psycopg.Error as exc:
        print(f"seed_db: database error: {exc}".strip(), file=sys.stderr)
        return 1
    result.update(size_bytes=size[0], size=size[1], seconds=round(time.monotonic() - t0, 2))
    if args.json:
        print(json.dumps(result))
    else:
        c = result["counts"]
        what = "seeded" if result["seeded"] else "already seeded, nothing to do:"
        print(f"{args.dbname} {what} markets={c['markets']} orders={c['orders']} fills={c['fills']} "
              f"positions={c['positions']} metrics={c['metrics']}")
        print(f"database size: {result['size']} ({result['size_bytes']} bytes); {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

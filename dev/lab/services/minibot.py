#!/usr/bin/env python3
"""minibot: the lab's stand-in for the ag-botkit trading bot (kill switch + live writes).

    .venv/bin/python dev/lab/services/minibot.py --port 59091 --lab-dir .lab

While trading it writes one order and its fill (and updates the market's position) into
PostgreSQL about every 100 ms, each in its own transaction; when halted it stops within one
tick and closes its database connection. The kill-switch state survives restarts in
<lab-dir>/minibot_state.json. See docs/lab/bot.md for the API and the faults.

As a pod of the Kubernetes emulator (DATABASE_HOST set, see deploy/k8s) it takes its database from
DATABASE_HOST/PORT/NAME/USER and DATABASE_PASSWORD (or DATABASE_PASSWORD_FILE), its kill-switch
token from KILL_SWITCH_TOKEN, and nothing from the lab's secrets.json or PG* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import random
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, fault, secrets, setup_logging  # noqa: E402

# seconds between two orders; the lab default writes 10 a second. make test sets LAB_MINIBOT_TICK (README, Tests):
# a slower bot costs less CPU and grows the database less over a run, and every wait in the tests allows for it
TICK = float(os.environ.get("LAB_MINIBOT_TICK") or 0.1)
BACKOFF_MAX = 2.0
# /health reuses its own database connection for at most this many seconds, then logs in again: a probe a second
# that logs in each time costs a backend fork and a SCRAM exchange; a password change still shows within this time
HEALTH_CONN_MAX_AGE = 10.0
# one order, its fill and the market's position, as one statement (so one transaction)
WRITE_SQL = (
    "WITH o AS (INSERT INTO orders (market_id, side, order_type, price, qty, status, strategy, client_order_id) "
    "VALUES (%(market)s, %(side)s, 'limit', %(price)s, %(qty)s, 'filled', 'minibot', %(coid)s) RETURNING id), "
    "f AS (INSERT INTO fills (order_id, price, qty, fee, liquidity) "
    "SELECT id, %(price)s, %(qty)s, %(fee)s, 'maker' FROM o), "
    "p AS (INSERT INTO positions (market_id, qty, avg_price, updated_at) VALUES (%(market)s, %(signed)s, %(price)s, "
    "now()) ON CONFLICT (market_id) DO UPDATE SET qty = positions.qty + EXCLUDED.qty, "
    "avg_price = EXCLUDED.avg_price, updated_at = now()) "
    "SELECT id FROM o")
log = setup_logging("minibot")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Bot:
    def __init__(self, lab_dir: Path, dsn: str | None = None):
        self.lab_dir = lab_dir
        self.dsn = dsn
        self.state_file = lab_dir / "minibot_state.json"
        initial = os.environ.get("KILL_SWITCH_INITIAL_STATE", "trading")
        self.state = {"state": initial if initial in ("trading", "halted") else "trading", "since": now_iso(),
                      "reason": None if initial != "halted" else "started halted (KILL_SWITCH_INITIAL_STATE)"}
        try:
            saved = json.loads(self.state_file.read_text())
            if saved.get("state") in ("trading", "halted"):
                self.state = {k: saved.get(k) for k in ("state", "since", "reason")}
        except (OSError, ValueError, AttributeError):
            pass
        self.orders_written = 0
        self.last_write: str | None = None
        self.last_error: str | None = None
        self.write_lock = asyncio.Lock()
        self.conn: psycopg.AsyncConnection | None = None
        self.health_conn: psycopg.AsyncConnection | None = None
        self.health_since = 0.0
        self.health_lock = asyncio.Lock()
        self.markets: list[tuple[int, float]] = []
        self.rng = random.Random(9091)

    # --- state -----------------------------------------------------------------
    def persist(self) -> None:
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state) + "\n")
        os.replace(tmp, self.state_file)

    def status(self) -> dict:
        return {**self.state, "orders_written": self.orders_written, "last_write": self.last_write}

    def should_write(self) -> bool:
        return self.state["state"] == "trading" or fault(self.lab_dir, "minibot.ignore_trigger") is not None

    # --- database --------------------------------------------------------------
    def conn_kwargs(self, timeout: int = 3) -> dict:
        kw: dict = {"connect_timeout": timeout, "application_name": "minibot"}
        if pod_mode():
            kw.update(pod_database())
            return kw
        if not self.dsn:
            kw.setdefault("host", os.environ.get("PGHOST", "127.0.0.1"))
            kw["port"] = os.environ.get("PGPORT", "55432")
            kw["user"] = os.environ.get("PGUSER", "agbot")
            kw["dbname"] = os.environ.get("PGDATABASE", "ag_botkit")
        if not os.environ.get("PGPASSWORD"):
            pw = secrets(self.lab_dir).get("db_password")
            if pw:
                kw["password"] = pw
        return kw

    async def connect(self, timeout: int = 3) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.dsn or "", autocommit=True, options="-c statement_timeout=5000 -c lock_timeout=3000",
            **self.conn_kwargs(timeout))

    async def close_db(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):  # closing a broken connection
                await conn.close()

    async def write_one(self) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = await self.connect()
            cur = await self.conn.execute(
                "SELECT m.id, coalesce((SELECT o.price FROM orders o WHERE o.market_id = m.id "
                "ORDER BY o.created_at DESC LIMIT 1), 100)::float8 FROM markets m WHERE m.active ORDER BY m.id")
            self.markets = [(r[0], r[1]) for r in await cur.fetchall()]
            log.info("connected to the database; %d markets", len(self.markets))
        if not self.markets:
            raise RuntimeError("no markets in the database (is it seeded?)")
        i = self.rng.randrange(len(self.markets))
        market_id, ref = self.markets[i]
        price = round(ref * (1 + self.rng.uniform(-0.001, 0.001)), 6)
        self.markets[i] = (market_id, price)
        qty = round(self.rng.uniform(0.001, 1.0), 6)
        side = self.rng.choice(("buy", "sell"))
        # the order, its fill and the market's position in one statement: one transaction, one round trip
        # (three statements in a transaction cost five round trips, the bot's and its backend's CPU)
        signed = qty if side == "buy" else -qty
        await self.conn.execute(WRITE_SQL, {"market": market_id, "side": side, "price": price, "qty": qty,
                                            "coid": f"mb-{uuid.uuid4().hex}", "fee": round(price * qty * 0.0004, 8),
                                            "signed": signed})
        self.orders_written += 1
        self.last_write = now_iso()

    async def writer(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        while True:
            started = loop.time()
            try:
                async with self.write_lock:
                    if self.should_write():
                        await self.write_one()
                    elif self.conn is not None:
                        await self.close_db()
                        log.info("halted: database connection closed")
                if (self.health_conn is not None and not self.health_lock.locked()
                        and (not self.should_write() or started - self.health_since > HEALTH_CONN_MAX_AGE)):
                    await self.close_health()  # halted, or no check for a while: no connection stays open
                if backoff:
                    log.info("database writes recovered")
                backoff = 0.0
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - never crash on DB trouble: log, back off, retry
                backoff = min(BACKOFF_MAX, backoff * 2 if backoff else 0.5)
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if msg != self.last_error:
                    log.warning("write failed (%s); retrying in %.1f s", msg, backoff)
                self.last_error = msg
                await self.close_db()
                await asyncio.sleep(backoff)
                continue
            await asyncio.sleep(max(0.0, TICK - (loop.time() - started)))

    def backend(self) -> dict:
        """The database this bot uses (never the password)."""
        kw = self.conn_kwargs()
        return {"host": kw.get("host") or os.environ.get("PGHOST", ""), "port": str(kw.get("port", "")),
                "name": kw.get("dbname", ""), "user": kw.get("user", ""),
                "source": "DATABASE_* (pod)" if pod_mode() else ("dsn" if self.dsn else "PG* (lab)")}

    async def db_health(self) -> str | None:
        """None if the database answers, else the error text. The check keeps its own connection for up to
        HEALTH_CONN_MAX_AGE seconds (a failed query drops it and the check logs in again at once)."""
        loop = asyncio.get_running_loop()
        async with self.health_lock:
            conn = self.health_conn
            if conn is not None and not conn.closed and loop.time() - self.health_since <= HEALTH_CONN_MAX_AGE:
                try:
                    await conn.execute("SELECT 1")
                    return None
                except Exception:  # noqa: BLE001, S110 - the kept connection broke (a restarted database): log in again
                    pass
            await self.close_health()
            try:
                self.health_conn = await self.connect(timeout=2)
                self.health_since = loop.time()
                await self.health_conn.execute("SELECT 1")
            except Exception as exc:  # noqa: BLE001
                await self.close_health()
                return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return None

    async def close_health(self) -> None:
        if self.health_conn is not None:
            conn, self.health_conn = self.health_conn, None
            with contextlib.suppress(Exception):
                await conn.close()


def pod_mode() -> bool:
    return bool(os.environ.get("DATABASE_HOST"))


def pod_database() -> dict:
    """Connection keywords from the pod's DATABASE_* variables (ConfigMap and Secret)."""
    env = os.environ
    kw = {"host": env["DATABASE_HOST"], "port": env.get("DATABASE_PORT", "5432"),
          "dbname": env.get("DATABASE_NAME", "ag_botkit"), "user": env.get("DATABASE_USER", "agbot")}
    password = env.get("DATABASE_PASSWORD")
    pw_file = env.get("DATABASE_PASSWORD_FILE")
    if password is None and pw_file:
        # a path inside the container: the emulator mounts volumes under $LAB_POD_ROOT
        path = Path(env.get("LAB_POD_ROOT", "/")) / pw_file.lstrip("/") if env.get("LAB_POD_ROOT") else Path(pw_file)
        with contextlib.suppress(OSError):
            password = path.read_text().strip()
    if password is not None:
        kw["password"] = password
    return kw


def kill_switch_token(lab_dir: Path) -> str | None:
    return os.environ.get("KILL_SWITCH_TOKEN") or secrets(lab_dir).get("kill_switch_token")


# --- HTTP ----------------------------------------------------------------------
def jerror(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def fault_middleware(request: web.Request, handler):
    bot: Bot = request.app["bot"]
    down = fault(bot.lab_dir, "minibot.down")
    if down is not None:
        if down.get("mode") == "close":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing is sent: the client sees the connection drop
        return jerror(503, "service unavailable (fault minibot.down)")
    slow = fault(bot.lab_dir, "minibot.slow")
    if slow is not None:
        await asyncio.sleep(float(slow.get("seconds", 10)))
    if request.path.startswith("/api/kill-switch") and fault(bot.lab_dir, "minibot.error") is not None:
        return jerror(500, "internal server error (fault minibot.error)")
    return await handler(request)


def authorized(request: web.Request) -> bool:
    token = kill_switch_token(request.app["bot"].lab_dir)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_reason(request: web.Request, default: str | None) -> str | None:
    raw = await request.read()
    if not raw.strip():
        return default
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}),
                                 content_type="application/json") from None
    if isinstance(body, dict) and body.get("reason") is not None:
        return str(body["reason"])
    return default


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app["bot"].status())


async def trigger(request: web.Request) -> web.Response:
    bot: Bot = request.app["bot"]
    if not authorized(request):
        log.warning("kill-switch trigger refused: bad or missing token from %s", request.remote)
        return jerror(401, "unauthorized")
    reason = await read_reason(request, "manual trigger")
    if bot.state["state"] == "halted":
        return web.json_response({**bot.status(), "changed": False})
    bot.state = {"state": "halted", "since": now_iso(), "reason": reason}
    bot.persist()
    if fault(bot.lab_dir, "minibot.ignore_trigger") is None:
        async with bot.write_lock:  # the in-flight write (if any) finishes before we answer
            pass
    else:
        log.warning("fault minibot.ignore_trigger: reporting halted but writes continue")
    log.warning("KILL SWITCH TRIGGERED: trading halted (reason: %s)", reason)
    return web.json_response({**bot.status(), "changed": True})


async def reset(request: web.Request) -> web.Response:
    bot: Bot = request.app["bot"]
    if not authorized(request):
        log.warning("kill-switch reset refused: bad or missing token from %s", request.remote)
        return jerror(401, "unauthorized")
    reason = await read_reason(request, None)
    if bot.state["state"] == "trading":
        return web.json_response({**bot.status(), "changed": False})
    bot.state = {"state": "trading", "since": now_iso(), "reason": reason}
    bot.persist()
    log.warning("kill switch reset: trading resumed")
    return web.json_response({**bot.status(), "changed": True})


async def health(request: web.Request) -> web.Response:
    bot: Bot = request.app["bot"]
    err = await bot.db_health()
    body = {"status": "ok" if err is None else "degraded", "db": "ok" if err is None else "error",
            "state": bot.state["state"], "orders_written": bot.orders_written, "last_write": bot.last_write,
            "database": bot.backend()}
    if err is not None:
        body["db_error"] = err
    if bot.last_error:
        body["write_error"] = bot.last_error
    return web.json_response(body, status=200 if err is None else 503)


def make_app(lab_dir: Path, dsn: str | None = None) -> web.Application:
    app = web.Application(middlewares=[fault_middleware])
    app["bot"] = Bot(lab_dir, dsn)
    app.router.add_get("/health", health)
    app.router.add_get("/api/kill-switch", get_status)
    app.router.add_get("/api/kill-switch/status", get_status)
    app.router.add_post("/api/kill-switch/trigger", trigger)
    app.router.add_post("/api/kill-switch/reset", reset)

    async def background(app: web.Application):
        bot: Bot = app["bot"]
        if not bot.state_file.exists():
            bot.persist()
        log.info("kill switch state: %s since %s", bot.state["state"], bot.state["since"])
        task = asyncio.create_task(bot.writer())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await bot.close_db()
        await bot.close_health()
        bot.persist()
        log.info("stopped (%d orders written)", bot.orders_written)

    app.cleanup_ctx.append(background)
    return app


def main() -> None:
    ap = base_parser("minibot: trading-bot stand-in for the DR lab", 59091, "LAB_MINIBOT_PORT")
    ap.add_argument("--dsn", help="libpq connection string (default: the PG* environment variables)")
    args = ap.parse_args()
    app = make_app(args.lab_dir, args.dsn)
    log.info("listening on http://%s:%d (lab dir %s)", args.host, args.port, args.lab_dir)
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=2, handle_signals=True)


if __name__ == "__main__":
    main()

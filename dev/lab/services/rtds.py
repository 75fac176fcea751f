#!/usr/bin/env python3
"""RTDS: the lab's real-time market-data websocket feed.

    .venv/bin/python dev/lab/services/rtds.py --port 58765 --lab-dir .lab

Connect to ws://127.0.0.1:58765/ws and send {"type": "subscribe", "markets": ["BTC-USD", ...]};
then about every 100 ms (LAB_RTDS_TICK seconds) the server sends, for each subscribed market, one
{"type": "tick", "seq": n, "ts": "...Z", "market": m, "price": p} (seq counts the messages of
this connection from 1). GET /healthz answers 200 "ok" (503 while rtds.down is on).
Faults: rtds.down, rtds.gaps {"every": 5, "skip": 3}, rtds.stall. See docs/lab/bot.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, fault, setup_logging  # noqa: E402

# seconds between two ticks of a subscription; the lab default sends 10 a second. make test may set LAB_RTDS_TICK
# (README, Tests): every connected client (the rtds-client pods) costs the feed and itself CPU per tick
TICK = float(os.environ.get("LAB_RTDS_TICK") or 0.1)
DEFAULT_MARKETS = ["BTC-USD", "ETH-USD"]
REF_PRICES = {"BTC-USD": 64000.0, "ETH-USD": 3200.0, "SOL-USD": 150.0, "XRP-USD": 0.6, "ADA-USD": 0.45,
              "DOGE-USD": 0.15, "AVAX-USD": 35.0, "LINK-USD": 14.0}
log = setup_logging("rtds")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Feed:
    def __init__(self, lab_dir: Path):
        self.lab_dir = lab_dir
        self.connections = 0

    def process_request(self, connection: ServerConnection, request):
        path = request.path.split("?", 1)[0]
        if fault(self.lab_dir, "rtds.down") is not None:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "rtds down (fault rtds.down)\n")
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found; the feed is at /ws\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        peer = ws.remote_address
        log.info("client %s connected (%d open)", peer, self.connections)
        markets: list[str] = []
        rng = random.Random(58765)
        prices: dict[str, float] = {}
        state = {"seq": 0, "sent": 0}

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                if markets and fault(self.lab_dir, "rtds.stall") is None:
                    gaps = fault(self.lab_dir, "rtds.gaps")
                    for m in list(markets):
                        state["seq"] += 1
                        state["sent"] += 1
                        if gaps is not None and state["sent"] % max(1, int(gaps.get("every", 5))) == 0:
                            state["seq"] += max(1, int(gaps.get("skip", 3)))
                        p = prices.get(m, REF_PRICES.get(m, 100.0))
                        prices[m] = p = round(p * (1 + rng.uniform(-0.0005, 0.0005)), 6)
                        await ws.send(json.dumps({"type": "tick", "seq": state["seq"], "ts": now_iso(),
                                                  "market": m, "price": p}))
                await asyncio.sleep(max(0.0, TICK - (loop.time() - started)))

        task: asyncio.Task | None = None
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                except (ValueError, AttributeError):
                    await ws.send(json.dumps({"type": "error", "error": "messages must be JSON objects"}))
                    continue
                if kind == "subscribe":
                    wanted = msg.get("markets") or DEFAULT_MARKETS
                    if not isinstance(wanted, list) or not all(isinstance(m, str) for m in wanted):
                        await ws.send(json.dumps({"type": "error", "error": "markets must be a list of strings"}))
                        continue
                    markets.extend(m for m in wanted if m not in markets)
                    log.info("client %s subscribed to %s", peer, ",".join(markets))
                    if task is None:
                        task = asyncio.create_task(ticker())
                elif kind == "unsubscribe":
                    for m in msg.get("markets") or list(markets):
                        if m in markets:
                            markets.remove(m)
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": now_iso()}))
                else:
                    await ws.send(json.dumps({"type": "error", "error": f"unknown message type {kind!r}"}))
        except ConnectionClosed:
            pass
        finally:
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, ConnectionClosed):
                    pass
            self.connections -= 1
            log.info("client %s gone (%d open)", peer, self.connections)


async def run(host: str, port: int, lab_dir: Path) -> None:
    feed = Feed(lab_dir)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(feed.handler, host, port, process_request=feed.process_request):
        log.info("listening on ws://%s:%d/ws (lab dir %s)", host, port, lab_dir)
        await stop
        log.info("stopping")


def main() -> None:
    args = base_parser("RTDS market-data websocket for the DR lab", 58765, "LAB_RTDS_PORT").parse_args()
    asyncio.run(run(args.host, args.port, args.lab_dir))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""rtds-client: the lab's stand-in for ag-botkit's market-data client (image ghcr.io/ag-botkit/rtds-client).

    .venv/bin/python dev/lab/services/rtds_client.py --port 8080 --lab-dir DIR

Connects to RTDS_URL (a websocket of dev/lab/services/rtds.py), subscribes to RTDS_MARKETS (comma
separated, default BTC-USD,ETH-USD), and keeps reconnecting. GET /health answers 200 while a tick
arrived within RTDS_STALE_SECONDS (default 3), else 503 with the reason (not connected, stalled,
gaps are counted). The Kubernetes emulator runs it as the process of an rtds-client pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from aiohttp import web
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, setup_logging  # noqa: E402

log = setup_logging("rtds-client")


class Client:
    def __init__(self, url: str, markets: list[str], stale: float) -> None:
        self.url, self.markets, self.stale = url, markets, stale
        self.connected = False
        self.last_tick = 0.0
        self.ticks = 0
        self.gaps = 0
        self.error: str | None = None

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with connect(self.url, open_timeout=3) as ws:
                    await ws.send(json.dumps({"type": "subscribe", "markets": self.markets}))
                    self.connected, self.error, backoff = True, None, 0.5
                    log.info("connected to %s, subscribed to %s", self.url, ",".join(self.markets))
                    seq = 0
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "tick":
                            if seq and msg.get("seq", seq + 1) != seq + 1:
                                self.gaps += 1
                            seq = msg.get("seq", seq + 1)
                            self.ticks += 1
                            self.last_tick = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - report, back off, reconnect
                msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if msg != self.error:
                    log.warning("feed %s: %s; reconnecting", self.url, msg)
                self.error = msg
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    def health(self) -> tuple[int, dict]:
        age = time.monotonic() - self.last_tick if self.last_tick else None
        body = {"url": self.url, "connected": self.connected, "ticks": self.ticks, "gaps": self.gaps,
                "last_tick_age": None if age is None else round(age, 2)}
        if self.error:
            body["error"] = self.error
        ok = self.connected and age is not None and age <= self.stale
        body["status"] = "ok" if ok else ("stalled" if self.connected else "disconnected")
        return (200 if ok else 503), body


def make_app(client: Client) -> web.Application:
    app = web.Application()

    async def health(_request: web.Request) -> web.Response:
        status, body = client.health()
        return web.json_response(body, status=status)

    async def background(_app: web.Application):
        task = asyncio.create_task(client.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/health", health)
    app.cleanup_ctx.append(background)
    return app


def main() -> None:
    ap = base_parser("rtds-client: market-data client stand-in", 8080, "PORT")
    args = ap.parse_args()
    url = os.environ.get("RTDS_URL") or "ws://127.0.0.1:58765/ws"
    markets = [m for m in os.environ.get("RTDS_MARKETS", "BTC-USD,ETH-USD").split(",") if m]
    client = Client(url, markets, float(os.environ.get("RTDS_STALE_SECONDS", "3")))
    log.info("listening on http://%s:%d, feed %s", args.host, args.port, url)
    web.run_app(make_app(client), host=args.host, port=args.port, print=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()

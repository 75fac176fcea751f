#!/usr/bin/env python3
"""Notification sinks of the DR lab: Slack, PagerDuty, Statuspage over HTTP, and SMTP.

    .venv/bin/python dev/lab/services/sinks.py --port 58080 --smtp-port 58025 --lab-dir .lab

Every request a channel receives is appended to <lab-dir>/sinks/<channel>.jsonl (one JSON
object a line: time, method, path, headers, body, status) and served back at
GET /_sink/<channel> (a JSON list); DELETE /_sink/<channel> clears it. GET /healthz answers 200.
Faults: sinks.<channel>_down (HTTP channels answer 503, SMTP refuses; nothing is recorded).
Credentials in headers are redacted in the records. See docs/lab/bot.md and docs/lab.md.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import re
import secrets as pysecrets
import signal
import sys
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, fault, secrets, setup_logging  # noqa: E402

CHANNELS = ("slack", "pagerduty", "statuspage", "smtp")
REDACT = {"authorization", "x-api-key", "cookie"}
SMTP_MAX = 10 * 1024 * 1024
log = setup_logging("sinks")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, lab_dir: Path):
        self.lab_dir = lab_dir
        self.dir = lab_dir / "sinks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.incidents_file = self.dir / "statuspage_incidents.json"
        try:
            self.incidents: dict[str, dict] = json.loads(self.incidents_file.read_text())
        except (OSError, ValueError):
            self.incidents = {}

    def path(self, channel: str) -> Path:
        return self.dir / f"{channel}.jsonl"

    def record(self, channel: str, entry: dict) -> None:
        entry = {"time": now_iso(), "channel": channel, **entry}
        with self.path(channel).open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def read(self, channel: str) -> list[dict]:
        try:
            lines = self.path(channel).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def clear(self, channel: str) -> int:
        n = len(self.read(channel))
        self.path(channel).write_text("")
        if channel == "statuspage":
            self.incidents = {}
            self.save_incidents()
        return n

    def save_incidents(self) -> None:
        tmp = self.incidents_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.incidents))
        tmp.replace(self.incidents_file)

    def down(self, channel: str) -> bool:
        return fault(self.lab_dir, f"sinks.{channel}_down") is not None


# --- HTTP channels ---------------------------------------------------------------
def channel_of(path: str) -> str | None:
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in CHANNELS else None


def redacted_headers(request: web.Request) -> dict:
    return {k: ("<redacted>" if k.lower() in REDACT else v) for k, v in request.headers.items()}


async def parsed_body(request: web.Request):
    raw = await request.read()
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        pass
    if request.content_type == "application/x-www-form-urlencoded":
        form = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(text).items()}
        if isinstance(form.get("payload"), str):  # Slack's legacy form-encoded webhook
            try:
                return json.loads(form["payload"])
            except ValueError:
                pass
        return form
    return text


@web.middleware
async def sink_middleware(request: web.Request, handler):
    store: Store = request.app["store"]
    channel = channel_of(request.path)
    if channel is None:
        return await handler(request)
    if store.down(channel):
        return web.json_response({"error": f"{channel} unavailable (fault sinks.{channel}_down)"}, status=503)
    body = await parsed_body(request)
    request["body"] = body
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        resp = exc
    entry = {"method": request.method, "path": request.path, "headers": redacted_headers(request), "body": body,
             "status": resp.status}
    if request.query:
        entry["query"] = {k: ("<redacted>" if k == "api_key" else v) for k, v in request.query.items()}
    store.record(channel, entry)
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


async def slack(request: web.Request) -> web.Response:
    body = request["body"]
    if not isinstance(body, dict):
        return web.Response(status=400, text="invalid_payload")
    if not any(body.get(k) for k in ("text", "blocks", "attachments")):
        return web.Response(status=400, text="no_text")
    return web.Response(text="ok")


PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")


async def pagerduty(request: web.Request) -> web.Response:
    body = request["body"]
    errors = []
    if not isinstance(body, dict):
        errors.append("Event object must be JSON")
        body = {}
    if not body.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    action = body.get("event_action")
    if action not in PD_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action == "trigger":
        payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
        for key in ("summary", "source"):
            if not payload.get(key):
                errors.append(f"'payload.{key}' is missing or blank")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
    elif action in ("acknowledge", "resolve") and not body.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if errors:
        return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                  "errors": errors}, status=400)
    dedup = body.get("dedup_key") or pysecrets.token_hex(16)
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202)


def statuspage_authorized(request: web.Request) -> bool:
    key = secrets(request.app["store"].lab_dir).get("statuspage_api_key")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "oauth":
        given = request.query.get("api_key", "")
    return bool(key) and hmac.compare_digest(given.strip().encode(), str(key).encode())


INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "scheduled", "in_progress",
                     "verifying", "completed")


def _incident_fields(request: web.Request) -> dict | web.Response:
    body = request["body"]
    inc = body.get("incident") if isinstance(body, dict) else None
    if not isinstance(inc, dict):
        return web.json_response({"error": "incident is missing"}, status=400)
    if "status" in inc and inc["status"] not in INCIDENT_STATUSES:
        return web.json_response({"error": f"status is invalid: {inc['status']!r}"}, status=422)
    return inc


def _apply(incident: dict, fields: dict) -> None:
    now = now_iso()
    for key in ("name", "status", "impact_override", "deliver_notifications", "component_ids", "metadata"):
        if key in fields:
            incident[key] = fields[key]
    if "impact_override" in fields:
        incident["impact"] = fields["impact_override"]
    if isinstance(fields.get("components"), dict):
        incident["components"] = [{"id": k, "status": v} for k, v in fields["components"].items()]
    if "body" in fields or "status" in fields:
        incident["incident_updates"].insert(0, {
            "id": pysecrets.token_hex(6), "incident_id": incident["id"], "status": incident["status"],
            "body": fields.get("body", ""), "created_at": now, "display_at": now})
    if incident["status"] in ("resolved", "completed") and not incident.get("resolved_at"):
        incident["resolved_at"] = now
    incident["updated_at"] = now


async def statuspage(request: web.Request) -> web.Response:
    if not statuspage_authorized(request):
        return web.json_response({"error": "Could not authenticate"}, status=401)
    store: Store = request.app["store"]
    page_id = request.match_info["page_id"]
    incident_id = request.match_info.get("incident_id")
    if request.method == "GET" and incident_id in (None, "unresolved"):
        items = [i for i in store.incidents.values() if i["page_id"] == page_id]
        if incident_id == "unresolved":
            items = [i for i in items if i["status"] not in ("resolved", "completed")]
        return web.json_response(sorted(items, key=lambda i: i["created_at"], reverse=True))
    if request.method == "POST":
        fields = _incident_fields(request)
        if isinstance(fields, web.Response):
            return fields
        if not fields.get("name"):
            return web.json_response({"error": "name can't be blank"}, status=422)
        now = now_iso()
        iid = pysecrets.token_hex(6)
        incident = {"id": iid, "page_id": page_id, "name": "", "status": "investigating", "impact": "none",
                    "created_at": now, "updated_at": now, "resolved_at": None, "incident_updates": [],
                    "components": [], "shortlink": f"http://stspg.io/{iid[:6]}"}
        _apply(incident, {"status": "investigating", **fields})
        store.incidents[iid] = incident
        store.save_incidents()
        return web.json_response(incident, status=201)
    incident = store.incidents.get(incident_id or "")
    if incident is None or incident["page_id"] != page_id:
        return web.json_response({"error": "Not found"}, status=404)
    if request.method == "GET":
        return web.json_response(incident)
    fields = _incident_fields(request)
    if isinstance(fields, web.Response):
        return fields
    _apply(incident, fields)
    store.save_incidents()
    return web.json_response(incident)


async def sink_get(request: web.Request) -> web.Response:
    channel = request.match_info["channel"]
    if channel not in CHANNELS:
        return web.json_response({"error": f"unknown channel {channel!r}", "channels": CHANNELS}, status=404)
    store: Store = request.app["store"]
    if request.method == "DELETE":
        return web.json_response({"channel": channel, "cleared": store.clear(channel)})
    return web.json_response(store.read(channel))


async def sink_index(request: web.Request) -> web.Response:
    store: Store = request.app["store"]
    return web.json_response({c: {"count": len(store.read(c)), "down": store.down(c)} for c in CHANNELS})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "channels": list(CHANNELS), "smtp_port": request.app["smtp_port"]})


def make_app(store: Store, smtp_port: int) -> web.Application:
    app = web.Application(middlewares=[sink_middleware], client_max_size=SMTP_MAX)
    app["store"] = store
    app["smtp_port"] = smtp_port
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_sink", sink_index)
    app.router.add_route("GET", "/_sink/{channel}", sink_get)
    app.router.add_route("DELETE", "/_sink/{channel}", sink_get)
    app.router.add_post("/slack/services/{team}/{bot}/{token}", slack)
    app.router.add_post("/pagerduty/v2/enqueue", pagerduty)
    base = "/statuspage/v1/pages/{page_id}/incidents"
    app.router.add_route("GET", base, statuspage)
    app.router.add_route("POST", base, statuspage)
    app.router.add_route("GET", base + "/{incident_id}", statuspage)
    app.router.add_route("PATCH", base + "/{incident_id}", statuspage)
    app.router.add_route("PUT", base + "/{incident_id}", statuspage)
    return app


# --- SMTP --------------------------------------------------------------------------
ADDR_RE = re.compile(r"^\s*(?:FROM|TO)\s*:\s*<?([^<>\s]*)>?", re.IGNORECASE)


class SMTPSession:
    """A minimal SMTP server side (RFC 5321 subset): EHLO/HELO, AUTH PLAIN/LOGIN (any credentials),
    MAIL, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT. No TLS (STARTTLS is refused)."""

    def __init__(self, store: Store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.store, self.reader, self.writer = store, reader, writer
        self.reset()
        self.helo: str | None = None
        self.auth_user: str | None = None

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpts: list[str] = []

    async def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def readline(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout=300)

    async def run(self) -> None:
        if self.store.down("smtp"):
            await self.send("554 5.3.2 lab SMTP sink unavailable (fault sinks.smtp_down)")
            return
        await self.send("220 lab-sink ESMTP agbotkit DR lab sink ready")
        while True:
            raw = await self.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                await self.send("221 2.0.0 Bye")
                return
            handler = getattr(self, f"cmd_{verb.lower()}", None) if verb.isalpha() else None
            if handler is None:
                await self.send("502 5.5.2 Command not recognized")
                continue
            await handler(arg.strip())

    async def cmd_ehlo(self, arg: str) -> None:
        self.helo = arg
        self.reset()
        for line in ("250-lab-sink greets " + (arg or "client"), f"250-SIZE {SMTP_MAX}", "250-8BITMIME",
                     "250-SMTPUTF8", "250-AUTH PLAIN LOGIN", "250 HELP"):
            await self.send(line)

    async def cmd_helo(self, arg: str) -> None:
        self.helo = arg
        self.reset()
        await self.send("250 lab-sink")

    async def cmd_auth(self, arg: str) -> None:
        mech, _, initial = arg.partition(" ")
        try:
            if mech.upper() == "PLAIN":
                if not initial:
                    await self.send("334 ")
                    initial = (await self.readline()).decode().strip()
                parts = base64.b64decode(initial).split(b"\0")
                self.auth_user = parts[1].decode("utf-8", "replace") if len(parts) > 1 else ""
            elif mech.upper() == "LOGIN":
                if not initial:
                    await self.send("334 VXNlcm5hbWU6")
                    initial = (await self.readline()).decode().strip()
                self.auth_user = base64.b64decode(initial).decode("utf-8", "replace")
                await self.send("334 UGFzc3dvcmQ6")
                await self.readline()
            else:
                await self.send("504 5.5.4 Unrecognized authentication type")
                return
        except (ValueError, UnicodeDecodeError):
            await self.send("501 5.5.2 Cannot decode response")
            return
        await self.send("235 2.7.0 Authentication successful")

    async def cmd_starttls(self, arg: str) -> None:
        await self.send("454 4.7.0 TLS not available")

    async def cmd_mail(self, arg: str) -> None:
        m = ADDR_RE.match(arg)
        if not m or not arg.upper().startswith("FROM"):
            await self.send("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        if self.store.down("smtp"):
            await self.send("421 4.3.2 lab SMTP sink unavailable (fault sinks.smtp_down)")
            return
        self.reset()
        self.mail_from = m.group(1)
        await self.send("250 2.1.0 OK")

    async def cmd_rcpt(self, arg: str) -> None:
        if self.mail_from is None:
            await self.send("503 5.5.1 Error: need MAIL command")
            return
        m = ADDR_RE.match(arg)
        if not m or not arg.upper().startswith("TO") or not m.group(1):
            await self.send("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        self.rcpts.append(m.group(1))
        await self.send("250 2.1.5 OK")

    async def cmd_data(self, arg: str) -> None:
        if not self.rcpts:
            await self.send("503 5.5.1 Error: need RCPT command")
            return
        await self.send("354 End data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        size = 0
        while True:
            raw = await self.readline()
            if not raw:
                return
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b".."):
                raw = raw[1:]
            size += len(raw)
            if size <= SMTP_MAX:
                lines.append(raw)
        if size > SMTP_MAX:
            await self.send("552 5.3.4 Message too big")
        elif self.store.down("smtp"):
            await self.send("554 5.3.2 lab SMTP sink unavailable (fault sinks.smtp_down)")
        else:
            self.store.record("smtp", self.message_entry(b"".join(lines).replace(b"\r\n", b"\n")))
            await self.send(f"250 2.0.0 OK queued as {pysecrets.token_hex(5)}")
            log.info("smtp: message from %s to %s recorded", self.mail_from, ",".join(self.rcpts))
        self.reset()

    def message_entry(self, data: bytes) -> dict:
        msg = BytesParser(policy=policy.default).parsebytes(data)
        part = msg.get_body(preferencelist=("plain", "html"))
        try:
            body = part.get_content() if part is not None else msg.get_payload()
        except (KeyError, LookupError, ValueError):
            body = data.decode("utf-8", "replace")
        return {"method": "SMTP", "path": None, "from": self.mail_from, "to": list(self.rcpts),
                "subject": str(msg.get("Subject", "")), "headers": {k: str(v) for k, v in msg.items()},
                "body": body, "attachments": [a.get_filename() for a in msg.iter_attachments()],
                "helo": self.helo, "auth_user": self.auth_user, "status": 250}

    async def cmd_rset(self, arg: str) -> None:
        self.reset()
        await self.send("250 2.0.0 OK")

    async def cmd_noop(self, arg: str) -> None:
        await self.send("250 2.0.0 OK")

    async def cmd_vrfy(self, arg: str) -> None:
        await self.send("252 2.0.0 Cannot VRFY user, but will accept message")

    async def cmd_help(self, arg: str) -> None:
        await self.send("214 2.0.0 EHLO HELO AUTH MAIL RCPT DATA RSET NOOP VRFY QUIT")


async def run(args) -> None:
    store = Store(args.lab_dir)
    runner = web.AppRunner(make_app(store, args.smtp_port), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, shutdown_timeout=2)
    await site.start()

    async def on_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await SMTPSession(store, reader, writer).run()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    smtp = await asyncio.start_server(on_smtp, args.host, args.smtp_port)
    log.info("listening on http://%s:%d and smtp://%s:%d (lab dir %s)", args.host, args.port, args.host,
             args.smtp_port, args.lab_dir)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    log.info("stopping")
    smtp.close()
    await runner.cleanup()


def main() -> None:
    ap = base_parser("Notification sinks (HTTP + SMTP) for the DR lab", 58080, "LAB_SINK_PORT")
    ap.add_argument("--smtp-port", type=int, default=int(os.environ.get("LAB_SMTP_PORT", "58025")))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()

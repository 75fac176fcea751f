"""kill_switch / kill_switch_info against a tiny real HTTP server (no mocks of HTTP)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils import _errors as errors  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._killswitch import (  # noqa: E402
    KillSwitchClient,
    confirm_halt,
    confirm_resume,
    kill_switch_argument_spec,
)
from ansible_collections.agbotkit.dr.plugins.modules import kill_switch, kill_switch_info  # noqa: E402

TOKEN = "tok-9f8e7d6c5b4a"  # noqa: S105


class Bot:
    """State of the fake bot; mode: None, '500', 'slow', 'garbage'; keep_writing: orders grow while halted."""

    def __init__(self):
        self.state = "trading"
        self.reason = None
        self.since = "2025-01-01T00:00:00Z"
        self.orders_written = 100
        self.mode = None
        self.keep_writing = False
        self.slow_seconds = 1.0
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def status(self):
        if self.state == "trading" or self.keep_writing:
            self.orders_written += 5
        return {"state": self.state, "since": self.since, "reason": self.reason, "orders_written": self.orders_written}


def make_handler(bot: Bot):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _common(self, method):
            with bot.lock:
                bot.requests.append((method, self.path, self.headers.get("Authorization")))
            if bot.mode == "slow":
                time.sleep(bot.slow_seconds)
            if bot.mode == "500":
                return self._send(500, {"error": "boom"})
            if bot.mode == "garbage":
                return self._send(200, b"<html>hello</html>")
            if bot.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", bot.redirect_to + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            return None

        def do_GET(self):  # noqa: N802
            if self._common("GET") is not None or bot.mode in ("500", "garbage", "redirect"):
                return
            if self.path == "/health":
                return self._send(200, {"status": "ok"})
            if self.path == "/api/kill-switch":
                return self._send(200, bot.status())
            return self._send(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self._common("POST") is not None or bot.mode in ("500", "garbage", "redirect"):
                return
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                return self._send(401, {"error": "unauthorized"})
            if self.path == "/api/kill-switch/trigger":
                bot.state, bot.reason = "halted", body.get("reason")
                return self._send(200, bot.status())
            if self.path == "/api/kill-switch/reset":
                bot.state, bot.reason = "trading", None
                return self._send(200, bot.status())
            return self._send(404, {"error": "not found"})

    return Handler


@pytest.fixture
def bot():
    b = Bot()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(b))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    b.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield b
    server.shutdown()
    server.server_close()
    thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_module(mod, args: dict, capsys) -> tuple[dict, str]:
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def posts(bot):
    return [r for r in bot.requests if r[0] == "POST"]


# --- the module, end to end over HTTP ----------------------------------------------------------------

def base(bot, **kw):
    args = {"url": bot.url, "token": TOKEN, "settle_seconds": 0.2, "retries": 0, "timeout": 2}
    args.update(kw)
    return args


def test_trigger_then_idempotent(bot, capsys):
    res, out = run_module(kill_switch, base(bot, state="triggered", reason="incident 7"), capsys)
    assert res["changed"] is True and res["state"] == "halted" and res["previous_state"] == "trading"
    assert res["halt_confirmed"] is True and res["confirmed_by"] == ["api", "orders_written"]
    assert res["orders_written_during_settle"] == 0
    assert bot.reason == "incident 7"
    assert posts(bot) == [("POST", "/api/kill-switch/trigger", "Bearer " + TOKEN)]
    assert TOKEN not in out

    res, out = run_module(kill_switch, base(bot, state="triggered"), capsys)
    assert res["changed"] is False and res["halt_confirmed"] is True
    assert len(posts(bot)) == 1  # no second POST
    assert TOKEN not in out


def test_check_mode_sends_no_post(bot, capsys):
    res, _ = run_module(kill_switch, base(bot, state="triggered", _ansible_check_mode=True), capsys)
    assert res["changed"] is True and res["state"] == "halted" and res["halt_confirmed"] is None
    assert posts(bot) == [] and bot.state == "trading"
    bot.state = "halted"
    res, _ = run_module(kill_switch, base(bot, state="reset", _ansible_check_mode=True), capsys)
    assert res["changed"] is True and posts(bot) == [] and bot.state == "halted"


def test_reset(bot, capsys):
    bot.state = "halted"
    res, _ = run_module(kill_switch, base(bot, state="reset"), capsys)
    assert res["changed"] is True and res["state"] == "trading" and bot.state == "trading"
    res, _ = run_module(kill_switch, base(bot, state="reset"), capsys)
    assert res["changed"] is False


def test_wrong_token_is_not_retried(bot, capsys):
    res, out = run_module(kill_switch, base(bot, state="triggered", token="wrong-token-x", retries=3), capsys)
    assert res["failed"] is True
    assert "token rejected" in res["msg"] and "HTTP 401" in res["msg"] and "kill_switch_token" in res["msg"]
    assert len(posts(bot)) == 1
    assert "wrong-token-x" not in out


def test_server_error_retried_then_fails(bot, capsys):
    bot.mode = "500"
    started = time.monotonic()
    res, _ = run_module(kill_switch, base(bot, state="triggered", retries=2), capsys)
    assert res["failed"] is True and "HTTP 500" in res["msg"] and "3 attempt(s)" in res["msg"]
    assert "kubectl" in res["msg"]  # says what to do next
    assert len(bot.requests) == 3
    assert time.monotonic() - started >= 1.4  # backoff 0.5 s + 1 s


def test_timeout(bot, capsys):
    bot.mode = "slow"
    res, _ = run_module(kill_switch_info, {"url": bot.url, "timeout": 0.3, "retries": 1, "health": False}, capsys)
    assert res["failed"] is True and "no answer from" in res["msg"] and "within 0.3s" in res["msg"]
    assert len(bot.requests) == 2


def test_connection_refused():
    client = KillSwitchClient(f"http://127.0.0.1:{free_port()}", TOKEN, retries=1, backoff=0.01)
    with pytest.raises(errors.KillSwitchUnreachableError, match="cannot connect to .* after 2 attempt"):
        client.status()


def test_not_the_bot(bot):
    bot.mode = "garbage"
    with pytest.raises(errors.KillSwitchProtocolError, match="not JSON"):
        KillSwitchClient(bot.url, retries=0).status()


def test_halted_but_still_writing_fails(bot, capsys):
    bot.keep_writing = True
    res, _ = run_module(kill_switch, base(bot, state="triggered"), capsys)
    assert res["failed"] is True and res["halt_confirmed"] is False
    assert "reports halted but its orders_written counter grew" in res["msg"]
    assert "stop it at the source" in res["msg"]
    res, _ = run_module(kill_switch, base(bot, state="triggered", fail_on_unconfirmed=False), capsys)
    assert res.get("failed") is not True and res["halt_confirmed"] is False


def test_info(bot, capsys):
    res, out = run_module(kill_switch_info, {"url": bot.url, "token": TOKEN}, capsys)
    assert res["changed"] is False and res["halted"] is False
    assert res["health"] == {"status": "ok"}
    assert set(res["kill_switch"]) == {"state", "since", "reason", "orders_written"}
    assert TOKEN not in out


def test_missing_token_on_trigger(bot, capsys):
    res, _ = run_module(kill_switch, {"url": bot.url, "state": "triggered", "retries": 0}, capsys)
    assert res["failed"] is True and "no token" in res["msg"]


# --- confirmation logic (database counters are plain callables here) ----------------------------------

class Counter:
    def __init__(self, *snapshots):
        self.snapshots = list(snapshots)

    def __call__(self):
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]


def test_confirm_halt_database_writes_continue():
    counter = Counter({"public.orders": 10, "public.fills": 5}, {"public.orders": 13, "public.fills": 5})
    res = confirm_halt(counter, 2, sleep=lambda s: None)
    assert res["halt_confirmed"] is False
    assert res["rows_during_settle"] == {"public.orders": 3, "public.fills": 0}
    assert res["message"].startswith("the bot reports halted but 3 row(s) were written in the last 2s")


def test_confirm_halt_quiet_database():
    counter = Counter({"public.orders": 10})
    res = confirm_halt(counter, 2, sleep=lambda s: None)
    assert res["halt_confirmed"] is True and res["rows_during_settle"] == {"public.orders": 0}


def test_confirm_resume():
    grows = Counter({"public.orders": 10}, {"public.orders": 10}, {"public.orders": 12})
    res = confirm_resume(grows, 5, poll=0, sleep=lambda s: None)
    assert res["resume_confirmed"] is True and res["rows_during_settle"] == {"public.orders": 2}
    ticks = iter(range(100))
    still = Counter({"public.orders": 10})
    res = confirm_resume(still, 3, poll=0, sleep=lambda s: None, clock=lambda: next(ticks))
    assert res["resume_confirmed"] is False and "no new rows" in res["message"]


def test_kill_switch_argument_spec():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec = kill_switch_argument_spec()
    assert spec["token"]["no_log"] is True
    res = ArgumentSpecValidator(kill_switch.argument_spec()).validate({"url": "http://x", "state": "triggered"})
    assert not res.error_messages
    p = res.validated_parameters
    assert (p["retries"], p["timeout"], p["settle_seconds"], p["confirm_tables"]) == (3, 10, 2, ["orders", "fills"])
    res = ArgumentSpecValidator(kill_switch.argument_spec()).validate({"url": "http://x", "state": "paused"})
    assert res.error_messages


def test_token_goes_only_with_post_and_never_across_a_redirect(bot):
    other = Bot()  # another host: must never see the token
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(other))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = KillSwitchClient(bot.url, TOKEN, retries=0, sleep=lambda s: None)
        client.status()
        assert [r for r in bot.requests if r[0] == "GET"] and all(r[2] is None for r in bot.requests if r[0] == "GET")
        bot.mode, bot.redirect_to = "redirect", f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(errors.AgbotDrError, match="redirect"):
            client.request("POST", "/api/kill-switch/trigger", {"reason": "t"}, auth=True)
        assert other.requests == []  # the redirect was not followed
    finally:
        server.shutdown()
        server.server_close()

# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client of the trading bot's kill-switch API, and the halt / resume confirmation logic.

The contract (minibot, and the production bot it stands in for):
  GET  /health                   -> 200 JSON
  GET  /api/kill-switch          -> {"state": "trading"|"halted", "since", "reason", "orders_written"}
  POST /api/kill-switch/trigger  body {"reason": ...}   Authorization: Bearer <token> (wrong token: 401)
  POST /api/kill-switch/reset                            Authorization: Bearer <token>

Requests go through ansible's open_url (no requests dependency on the target). Connection
errors, timeouts and 5xx answers are retried with exponential backoff; 401/403 never are.
Every failure message says what to do next. The token never appears in a message.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import open_url

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import (
    HaltNotConfirmedError,
    KillSwitchAuthError,
    KillSwitchProtocolError,
    KillSwitchServerError,
    KillSwitchTimeoutError,
    KillSwitchUnreachableError,
    ResumeNotConfirmedError,
)

STATUS_PATH = "/api/kill-switch"
TRIGGER_PATH = "/api/kill-switch/trigger"
RESET_PATH = "/api/kill-switch/reset"
HEALTH_PATH = "/health"
HALTED = "halted"
TRADING = "trading"
MAX_BACKOFF = 8.0

STOP_AT_SOURCE = (
    "stop it at the source: scale the bot to zero (kubectl -n ag-botkit scale deployment/minibot --replicas=0), "
    "or revoke its database role's INSERT privilege / terminate its sessions (pg_terminate_backend)"
)


def kill_switch_argument_spec() -> dict:
    """Connection options of the kill-switch API (doc fragment agbotkit.dr.kill_switch)."""
    return dict(
        url=dict(type="str", required=True, fallback=(env_fallback, ["AGBOT_KILL_SWITCH_URL"])),
        token=dict(type="str", no_log=True, fallback=(env_fallback, ["AGBOT_KILL_SWITCH_TOKEN"])),
        timeout=dict(type="float", default=10),
        retries=dict(type="int", default=3),
        validate_certs=dict(type="bool", default=True),
    )


def _is_timeout(exc) -> bool:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return True
    reason = getattr(exc, "reason", None)
    return isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason or exc).lower()


class KillSwitchClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10, retries: int = 3,
                 validate_certs: bool = True, backoff: float = 0.5, sleep=time.sleep, opener=open_url):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.validate_certs = validate_certs
        self.backoff = backoff
        self.sleep = sleep
        self.opener = opener
        self.attempts_log: list[dict] = []  # method, path, attempt, outcome (never headers)

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "********") if self.token else text

    def request(self, method: str, path: str, body: dict | None = None, auth: bool = False):
        url = self.url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token and method == "POST":  # only state changes carry the token; reads never do
            headers["Authorization"] = "Bearer " + self.token
        elif auth:
            raise KillSwitchAuthError(
                "no token for %s %s: set token (or AGBOT_KILL_SWITCH_TOKEN) to the bot's kill-switch token" % (
                    method, url))
        attempts = self.retries + 1
        last = None
        for attempt in range(1, attempts + 1):
            try:
                resp = self.opener(url, data=data, headers=headers, method=method, timeout=self.timeout,
                                   validate_certs=self.validate_certs, follow_redirects="none")
                raw = resp.read()
                self.attempts_log.append({"method": method, "path": path, "attempt": attempt,
                                          "outcome": getattr(resp, "status", None) or resp.getcode()})
                if not raw:
                    return {}
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    raise KillSwitchProtocolError(
                        "%s %s answered something that is not JSON (%r...): is url pointing at the bot's API?" % (
                            method, url, raw[:80])) from exc
            except HTTPError as exc:
                self.attempts_log.append({"method": method, "path": path, "attempt": attempt, "outcome": exc.code})
                if 300 <= exc.code < 400:
                    raise KillSwitchProtocolError(
                        "%s %s answered HTTP %s (a redirect to %s), which is not followed so the token never goes to "
                        "another address: set url to the bot's API base URL itself (https in production)" % (
                            method, url, exc.code, (exc.headers or {}).get("Location", "?") if hasattr(exc, "headers")
                            else "?"), status=exc.code) from exc
                if exc.code in (401, 403):
                    raise KillSwitchAuthError(
                        "token rejected by %s %s (HTTP %s): check kill_switch_token / the secret the bot reads its "
                        "token from (it may have been rotated); not retried" % (method, url, exc.code),
                        status=exc.code) from exc
                if exc.code < 500:
                    raise KillSwitchProtocolError(
                        "%s %s answered HTTP %s: check url (it must be the bot's API base URL) and the bot's version"
                        % (method, url, exc.code), status=exc.code) from exc
                last = KillSwitchServerError(
                    "the kill-switch API %s %s answered HTTP %s after %d attempt(s): the bot is up but failing; "
                    "check its logs (kubectl -n ag-botkit logs deployment/minibot); if it cannot be fixed quickly, "
                    "%s" % (method, url, exc.code, attempt, STOP_AT_SOURCE), status=exc.code)
            except (URLError, http.client.HTTPException, OSError) as exc:
                outcome = "timeout" if _is_timeout(exc) else "connection error"
                self.attempts_log.append({"method": method, "path": path, "attempt": attempt, "outcome": outcome})
                if outcome == "timeout":
                    last = KillSwitchTimeoutError(
                        "no answer from %s %s within %ss after %d attempt(s): the bot may be hung or overloaded; "
                        "check it, raise timeout/retries, or %s" % (
                            method, url, self.timeout, attempt, STOP_AT_SOURCE))
                else:
                    reason = self._scrub(str(getattr(exc, "reason", exc)))
                    last = KillSwitchUnreachableError(
                        "cannot connect to %s (%s) after %d attempt(s): check url and that the bot (or the "
                        "port-forward to it) is running; a bot that is down may still have writers: confirm in "
                        "the database (confirm_db) or %s" % (url, reason, attempt, STOP_AT_SOURCE))
            if attempt < attempts:
                self.sleep(min(MAX_BACKOFF, self.backoff * (2 ** (attempt - 1))))
        raise last

    # API -------------------------------------------------------------------------------------
    def status(self) -> dict:
        data = self.request("GET", STATUS_PATH)
        if not isinstance(data, dict) or data.get("state") not in (HALTED, TRADING):
            raise KillSwitchProtocolError(
                "GET %s%s did not answer {\"state\": \"trading\"|\"halted\", ...} but %r: check url" % (
                    self.url, STATUS_PATH, data))
        return data

    def health(self) -> dict:
        data = self.request("GET", HEALTH_PATH)
        return data if isinstance(data, dict) else {"body": data}

    def trigger(self, reason: str) -> dict:
        return self.request("POST", TRIGGER_PATH, {"reason": reason}, auth=True)

    def reset(self) -> dict:
        return self.request("POST", RESET_PATH, {}, auth=True)

    def wait_for_state(self, want: str, wait_seconds: float, poll: float = 0.25, clock=time.monotonic) -> dict:
        """Poll status until it reads `want`; returns the last status (the caller checks it)."""
        deadline = clock() + wait_seconds
        while True:
            st = self.status()
            if st["state"] == want or clock() >= deadline:
                return st
            self.sleep(poll)


def public_status(status: dict) -> dict:
    """The documented fields of a status answer, for return values."""
    return {k: status.get(k) for k in ("state", "since", "reason", "orders_written")}


def confirm_halt(count_rows, settle_seconds: float, status_before: dict | None = None, status_after=None,
                 sleep=time.sleep) -> dict:
    """Counts rows per table before and after `settle_seconds`; no growth = halt confirmed.

    count_rows(): {table: rows} or None when no database check is configured.
    status_after(): a fresh status (orders_written is compared when both sides have it)."""
    before = count_rows() if count_rows else None
    sleep(settle_seconds)
    after = count_rows() if count_rows else None
    rows_during = None
    if before is not None:
        rows_during = {t: after[t] - before[t] for t in before}
    api_delta = None
    st_after = status_after() if status_after else None
    if status_before and st_after:
        b, a = status_before.get("orders_written"), st_after.get("orders_written")
        if isinstance(b, int) and isinstance(a, int):
            api_delta = a - b
    written = sum(v for v in (rows_during or {}).values() if v > 0)
    still_halted = st_after is None or st_after.get("state") == HALTED
    confirmed = written == 0 and (api_delta is None or api_delta <= 0) and still_halted
    msg = None
    if not confirmed:
        if written:
            detail = ", ".join("%s %s" % (n, t) for t, n in sorted(rows_during.items()) if n > 0)
            msg = ("the bot reports halted but %s row(s) were written in the last %ss (%s); %s"
                   % (written, settle_seconds, detail, STOP_AT_SOURCE))
        elif api_delta:
            msg = ("the bot reports halted but its orders_written counter grew by %s in the last %ss; %s"
                   % (api_delta, settle_seconds, STOP_AT_SOURCE))
        else:
            msg = ("the bot went back to %r during the settle period: someone or something reset it; %s"
                   % (st_after.get("state"), STOP_AT_SOURCE))
    return {"halt_confirmed": confirmed, "rows_during_settle": rows_during, "orders_written_during_settle": api_delta,
            "message": msg}


def confirm_resume(count_rows, settle_seconds: float, poll: float = 0.5, sleep=time.sleep,
                   clock=time.monotonic) -> dict:
    """Polls row counts until any table grows, for at most settle_seconds."""
    before = count_rows()
    deadline = clock() + settle_seconds
    rows_during = {t: 0 for t in before}
    while True:
        sleep(poll)
        after = count_rows()
        rows_during = {t: after[t] - before[t] for t in before}
        if any(v > 0 for v in rows_during.values()) or clock() >= deadline:
            break
    confirmed = any(v > 0 for v in rows_during.values())
    msg = None if confirmed else (
        "the bot reports trading but no new rows landed in %s within %ss: check the bot's logs and its database "
        "connection; raise settle_seconds if it trades slowly" % (", ".join(sorted(before)), settle_seconds))
    return {"resume_confirmed": confirmed, "rows_during_settle": rows_during, "message": msg}


def raise_unconfirmed(result: dict, halt: bool = True):
    if halt:
        raise HaltNotConfirmedError(result["message"], rows_during_settle=result.get("rows_during_settle"),
                                    halt_confirmed=False)
    raise ResumeNotConfirmedError(result["message"], rows_during_settle=result.get("rows_during_settle"),
                                  resume_confirmed=False)

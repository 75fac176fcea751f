"""Pure logic of the incident role's notifications (plugins/plugin_utils/incident.py), and the two action plugins
agbotkit.dr.incident_notify / incident_log driven directly against local HTTP and SMTP servers (no lab needed).
The end-to-end proof against the lab's sinks is tests/integration/test_incident.py."""

from __future__ import annotations

import datetime
import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible_collections.agbotkit.dr.plugins.action import incident_log, incident_notify  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.plugin_utils import incident as inc  # noqa: E402

SEVERITIES = {"P0": {"pagerduty_severity": "critical", "statuspage_impact": "critical"},
              "P1": {"pagerduty_severity": "error", "statuspage_impact": "major"},
              "P2": {"pagerduty_severity": "warning", "statuspage_impact": "minor"}}
TOKEN, ROUTING, APIKEY, PASSWORD = "slk-tok-123456", "pdk-route-123456", "spk-key-123456", "smtp-pw-123456"


def incident(tmp_path, **extra):
    return {"incident_id": "INC-1", "severity": "P0", "summary": "db down", "commander": "Ada", "user": "ops",
            "channels": ["slack", "pagerduty"], "log_path": str(tmp_path / "communication.jsonl"), **extra}


# --------------------------------------------------------------------------- pure logic
def test_truncate_is_jinjas():
    assert inc.truncate("a" * 305, 300) == "a" * 305  # leeway of 5
    assert inc.truncate("word " * 100, 20) == "word word word..."
    assert len(inc.truncate("x" * 2000, 1000)) <= 1000


def test_scrub_masks_every_secret_in_nested_values():
    out = inc.scrub({"a": ["url/" + TOKEN, {"b": "key " + APIKEY}], "n": 3}, [TOKEN, APIKEY, ""])
    assert out == {"a": ["url/********", {"b": "key ********"}], "n": 3}


def test_channel_selection():
    settings = {"slack": {"webhook_url": "u", "webhook_token": "t"}, "pagerduty": {"routing_key": ""},
                "email": {"smtp_host": "h", "to": []}, "statuspage": {"page_id": "p", "api_key": "k"}}
    assert inc.configured_channels(settings) == ["slack", "statuspage"]
    # a message's own channels are filtered by what is configured; none given: the incident's channels
    assert inc.select_channels(["pagerduty", "statuspage", "slack"], {}, settings) == ["statuspage", "slack"]
    assert inc.select_channels([], {"channels": ["slack"]}, settings) == ["slack"]


def test_compose_scrubs_the_text(tmp_path):
    text, subject = inc.compose(incident(tmp_path), "identified", "token " + TOKEN + " leaked", [TOKEN])
    assert text == "[P0] INC-1 (identified): token ******** leaked"
    assert subject == "[P0] INC-1 identified"
    assert inc.compose(incident(tmp_path), "investigating", "", [])[0] == "[P0] INC-1 (investigating): db down"


def test_request_bodies(tmp_path):
    i = incident(tmp_path)
    slack = inc.slack_request(i, "resolved", "t", {"webhook_url": "http://h/s/", "webhook_token": TOKEN,
                                                   "channel": "", "username": "bot"})
    assert slack["url"] == "http://h/s/" + TOKEN and "channel" not in slack["body"]
    assert slack["body"]["attachments"][0]["color"] == "danger"
    assert [f["title"] for f in slack["body"]["attachments"][0]["fields"]] == ["Severity", "Incident", "Status",
                                                                              "Commander"]
    assert inc.slack_request(dict(i, severity="P2"), "x", "t", {"webhook_url": "u", "webhook_token": "t",
                                                                "channel": "#ops"})["body"]["channel"] == "#ops"
    pd = inc.pagerduty_request(i, "resolved", "t", {"events_url": "u", "routing_key": ROUTING, "source": "s"},
                               SEVERITIES)["body"]
    assert pd["event_action"] == "resolve" and pd["dedup_key"] == "INC-1" and pd["payload"]["severity"] == "critical"
    assert inc.pagerduty_request(i, "identified", "t", {"events_url": "u", "routing_key": "r"},
                                 SEVERITIES)["body"]["event_action"] == "trigger"
    sp = {"api_url": "http://h/v1/", "page_id": "pg", "api_key": APIKEY}
    new = inc.statuspage_request(i, "investigating", "t", "s", sp, SEVERITIES)
    assert (new["method"], new["url"]) == ("POST", "http://h/v1/pages/pg/incidents")
    assert new["headers"] == {"Authorization": "OAuth " + APIKEY}
    upd = inc.statuspage_request(dict(i, statuspage_incident_id="42"), "resolved", "t", "s", sp, SEVERITIES)
    assert (upd["method"], upd["url"]) == ("PATCH", "http://h/v1/pages/pg/incidents/42")
    assert inc.remembered_statuspage(i, {"id": 7})["statuspage_incident_id"] == "7"
    assert inc.remembered_statuspage(dict(i, statuspage_incident_id="7"), {"id": 8}) is None
    assert inc.remembered_statuspage(i, None) is None and inc.remembered_statuspage(i, {"id": ""}) is None


def test_failure_detail_and_warning():
    long = "Status code was 503 and not [200]: " + "x " * 300 + TOKEN
    detail = inc.failure_detail(503, long, [TOKEN])
    assert detail.startswith("HTTP 503: Status code was 503") and detail.endswith("...") and TOKEN not in detail
    assert inc.failure_detail(None, "", []) == inc.NO_DETAIL
    assert inc.failure_detail(None, "Unable to Connect h:25: refused " + PASSWORD, [PASSWORD]).endswith("********")
    assert inc.warning_text("slack", "INC-1", "HTTP 503: x") == (
        "notification channel 'slack' failed for INC-1 (HTTP 503: x); the recovery goes on")


def test_log_line_format_and_append(tmp_path):
    i = incident(tmp_path)
    when = datetime.datetime(2025, 1, 1, 10, 0, 0, 123456, tzinfo=datetime.UTC)
    line = inc.log_line(i, {"type": "decision", "who": "Ada", "outcome": "recorded"}, when)
    assert list(json.loads(line)) == ["time", "incident_id", "severity", "user", "type", "who", "outcome"]
    assert json.loads(line)["time"] == "2025-01-01T10:00:00.123456Z"
    path = Path(i["log_path"])
    path.write_text('{"partial": 1}')  # no final newline: lineinfile adds one before appending
    os.chmod(path, 0o600)
    inc.append_line(str(path), line)
    inc.append_line(str(path), line)
    assert path.read_text().splitlines()[1:] == [line, line]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_not_declared():
    assert inc.check_incident({}, ("log_path",)) == inc.NOT_DECLARED
    assert "log_path" in inc.check_incident({"incident_id": "I"}, ("log_path",))


# --------------------------------------------------------------------------- the action plugins, really sending
class _Sink(BaseHTTPRequestHandler):
    status = {}
    seen = []

    def _handle(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        code = self.status.get(self.path.split("/")[1], 200)
        _Sink.seen.append({"method": self.command, "path": self.path, "body": body,
                           "auth": self.headers.get("Authorization"), "type": self.headers.get("Content-Type")})
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"id": "sp-99"} if self.path.startswith("/sp") else {"ok": True}).encode())

    do_POST = do_PATCH = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def http_sink():
    _Sink.seen, _Sink.status = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run(plugin_cls, args, check_mode=False):
    task = mock.MagicMock()
    task.args, task.check_mode, task.async_val, task.diff = args, check_mode, 0, False
    plugin = plugin_cls(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                        shared_loader_obj=None)
    with mock.patch.object(plugin_cls.__mro__[1], "run", return_value={}):
        return plugin.run(task_vars={})


def _notify_args(tmp_path, url, **extra):
    return {"incident": incident(tmp_path, channels=["slack", "pagerduty", "statuspage", "email"]),
            "status": "investigating", "message": "db down, token " + TOKEN, "severities": SEVERITIES,
            "http_timeout": 5, "validate_certs": True,
            "slack": {"webhook_url": url + "/slack/services/T/B", "webhook_token": TOKEN},
            "pagerduty": {"events_url": url + "/pd/enqueue", "routing_key": ROUTING},
            "statuspage": {"api_url": url + "/sp/v1", "page_id": "pg", "api_key": APIKEY},
            "email": {"smtp_host": "127.0.0.1", "smtp_port": 1, "secure": "never", "username": "u",
                      "password": PASSWORD, "to": ["a@example.com"]}, **extra}


def test_notify_sends_logs_and_warns_without_a_secret(tmp_path, http_sink):
    _Sink.status = {"slack": 503}
    result = _run(incident_notify.ActionModule, _notify_args(tmp_path, http_sink))
    assert [s["channel"] for s in result["sent"]] == ["pagerduty", "statuspage"]
    assert [f["channel"] for f in result["not_sent"]] == ["slack", "email"]
    assert result["not_sent"][0]["detail"].startswith("HTTP 503: Status code was 503 and not [200]")
    assert result["not_sent"][1]["detail"].startswith("Unable to Connect 127.0.0.1:1")
    assert result["ansible_facts"]["incident_timeline_warning"] == result["warnings"]
    assert result["warnings"][0].startswith("notification channel 'slack' failed for INC-1 (HTTP 503:")
    assert result["statuspage_incident"]["incident"]["statuspage_incident_id"] == "sp-99"
    assert result["statuspage_incident"]["id"] == "sp-99" and "incident_timeline" not in result["ansible_facts"]
    assert "failed" not in result  # a failed channel never fails the task (Ansible reads a true `failed` key)
    # the requests: same paths, bodies, headers as the uri tasks sent
    by_path = {r["path"].split("/")[1]: r for r in _Sink.seen}
    assert by_path["slack"]["path"] == "/slack/services/T/B/" + TOKEN
    assert by_path["pd"]["body"]["routing_key"] == ROUTING and by_path["pd"]["type"] == "application/json"
    assert by_path["sp"]["auth"] == "OAuth " + APIKEY and by_path["sp"]["method"] == "POST"
    assert all(TOKEN not in json.dumps(r["body"]) for r in _Sink.seen)  # the message text is scrubbed
    log = [json.loads(x) for x in Path(tmp_path / "communication.jsonl").read_text().splitlines()]
    assert [(e["channel"], e["outcome"]) for e in log] == [("slack", "failed"), ("pagerduty", "sent"),
                                                          ("statuspage", "sent"), ("email", "failed")]
    assert list(log[1]) == ["time", "incident_id", "severity", "user", "type", "channel", "outcome", "detail",
                            "status", "who", "message"]
    assert log[1]["detail"] == "HTTP 200" and log[3]["detail"].startswith("Unable to Connect")
    everything = json.dumps(result) + Path(tmp_path / "communication.jsonl").read_text()
    for secret in (TOKEN, ROUTING, APIKEY, PASSWORD):
        assert secret not in everything


def test_notify_patches_the_remembered_status_page_incident(tmp_path, http_sink):
    args = _notify_args(tmp_path, http_sink, channels=["statuspage"])
    args["incident"]["statuspage_incident_id"] = "sp-1"
    result = _run(incident_notify.ActionModule, args)
    assert [(r["method"], r["path"]) for r in _Sink.seen] == [("PATCH", "/sp/v1/pages/pg/incidents/sp-1")]
    assert "ansible_facts" not in result and "statuspage_incident" not in result and result["changed"] is True


def test_notify_check_mode_sends_and_writes_nothing(tmp_path, http_sink):
    result = _run(incident_notify.ActionModule, _notify_args(tmp_path, http_sink), check_mode=True)
    assert result["would_send"] == ["slack", "pagerduty", "statuspage", "email"] and result["changed"] is True
    assert _Sink.seen == [] and not (tmp_path / "communication.jsonl").exists()


def test_notify_without_a_declared_incident_fails_clearly(tmp_path):
    result = _run(incident_notify.ActionModule, {"incident": {}, "severities": SEVERITIES})
    assert result["failed"] is True and result["msg"] == inc.NOT_DECLARED
    result = _run(incident_log.ActionModule, {"incident": {}, "entry": {"type": "x"}})
    assert result["failed"] is True and result["msg"] == inc.NOT_DECLARED


def test_notify_no_channel(tmp_path):
    args = {"incident": incident(tmp_path, channels=[]), "severities": SEVERITIES}
    result = _run(incident_notify.ActionModule, args)
    assert result["msg"].startswith("No notification channel configured for INC-1; message not sent: [P0] INC-1")
    assert result["changed"] is False


def test_incident_log_appends_and_check_mode_writes_nothing(tmp_path):
    args = {"incident": incident(tmp_path), "entry": {"type": "custody", "who": "Ada", "sha256": "ab"}}
    assert _run(incident_log.ActionModule, args, check_mode=True)["changed"] is True
    assert not (tmp_path / "communication.jsonl").exists()
    _run(incident_log.ActionModule, args)
    (entry,) = [json.loads(x) for x in (tmp_path / "communication.jsonl").read_text().splitlines()]
    assert entry["type"] == "custody" and entry["incident_id"] == "INC-1" and entry["time"].endswith("Z")

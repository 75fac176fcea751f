"""Issue 5 end to end: playbooks/incident_drill.yml with the incident role and the incident_timeline
callback, notifications checked against the lab's sinks (dev/lab/services/sinks.py).

When the lab is up (.lab/lab.json) its sinks and secrets are used. Otherwise this module starts
dev/lab/services/sinks.py itself on free loopback ports with a temporary lab dir and its own secrets,
so the tests also run before `make lab-up`.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
ARTIFACTS = ROOT / "artifacts"
SINKS = ROOT / "dev" / "lab" / "services" / "sinks.py"
CHANNELS = ("slack", "pagerduty", "statuspage", "smtp")
SVG_NS = "{http://www.w3.org/2000/svg}"


# --------------------------------------------------------------------------- the sinks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, timeout: float = 5):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback lab URL
        return json.loads(resp.read() or b"null")


def _healthy(url: str) -> bool:
    try:
        return _http("GET", url + "/healthz", timeout=1).get("status") == "ok"
    except OSError:
        return False


class Sinks:
    def __init__(self, url: str, smtp_port: int, lab_dir: Path, lab_secrets: dict, mode: str):
        self.url, self.smtp_port, self.lab_dir, self.lab_secrets, self.mode = url, smtp_port, lab_dir, lab_secrets, mode

    def records(self, channel: str) -> list[dict]:
        return _http("GET", f"{self.url}/_sink/{channel}")

    def down(self, channel: str) -> Path:
        path = self.lab_dir / "faults" / f"sinks.{channel}_down"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return path


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    lab_json = LAB_DIR / "lab.json"
    if lab_json.exists():
        lab = json.loads(lab_json.read_text())
        url = f"http://127.0.0.1:{lab['ports']['sink']}"
        if _healthy(url):
            yield Sinks(url, int(lab["ports"]["smtp"]), Path(lab["lab_dir"]),
                        json.loads(Path(lab["secrets_file"]).read_text()), "lab")
            return
    if not SINKS.exists():
        pytest.skip("dev/lab/services/sinks.py is missing and the lab is not up")
    lab_dir = tmp_path_factory.mktemp("sinks-lab")
    lab_secrets = {"slack_webhook_token": "slk-" + pysecrets.token_hex(12),
                   "pagerduty_routing_key": "pdk-" + pysecrets.token_hex(12),
                   "statuspage_api_key": "spk-" + pysecrets.token_hex(12),
                   "db_password": "dbp-" + pysecrets.token_hex(12)}
    (lab_dir / "secrets.json").write_text(json.dumps(lab_secrets))
    port, smtp_port = _free_port(), _free_port()
    log = (lab_dir / "sinks.log").open("w")
    proc = subprocess.Popen([sys.executable, str(SINKS), "--host", "127.0.0.1", "--port", str(port),
                             "--smtp-port", str(smtp_port), "--lab-dir", str(lab_dir)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while not _healthy(url):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("sinks did not start: " + (lab_dir / "sinks.log").read_text())
            time.sleep(0.2)
        yield Sinks(url, smtp_port, lab_dir, lab_secrets, "own")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --------------------------------------------------------------------------- running the drill
@pytest.fixture(scope="module")
def drill(sinks, tmp_path_factory):
    """Run the drill; returns a function(name, down=()) -> result dict, cached per name."""
    base = tmp_path_factory.mktemp("incident")
    own = {"smtp_password": "smtp-" + pysecrets.token_hex(12)}
    channel_vars = {
        "incident_slack_webhook_url": f"{sinks.url}/slack/services/TLAB/BLAB",
        "incident_slack_webhook_token": sinks.lab_secrets["slack_webhook_token"],
        "incident_pagerduty_events_url": f"{sinks.url}/pagerduty/v2/enqueue",
        "incident_pagerduty_routing_key": sinks.lab_secrets["pagerduty_routing_key"],
        "incident_email_smtp_host": "127.0.0.1",
        "incident_email_smtp_port": sinks.smtp_port,
        "incident_email_secure": "never",
        "incident_email_username": "dr-bot",
        "incident_email_password": own["smtp_password"],
        "incident_email_from": "dr-bot@ag-botkit.example.com",
        "incident_email_to": ["incidents@ag-botkit.example.com"],
        "incident_statuspage_api_url": f"{sinks.url}/statuspage/v1",
        "incident_statuspage_page_id": "labpage",
        "incident_statuspage_api_key": sinks.lab_secrets["statuspage_api_key"],
    }
    if sinks.mode == "lab":
        inventory = "inventories/lab"
        env_extra = json.loads((LAB_DIR / "lab.json").read_text()).get("env", {})
    else:
        inventory = str(base / "inventory.yml")
        Path(inventory).write_text(json.dumps({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        env_extra = {"LAB_DIR": str(sinks.lab_dir)}
    cache: dict[str, dict] = {}

    def _run(name: str, down: tuple[str, ...] = (), **extra) -> dict:
        if name in cache:
            return cache[name]
        reports = base / name / "reports"
        vars_file = base / name / "vars.json"
        vars_file.parent.mkdir(parents=True)
        vars_file.write_text(json.dumps({**channel_vars, "incident_severity": "P0",
                                         "incident_commander": "Ada Lovelace", "incident_drill_phase_seconds": 1,
                                         **extra}))
        env = dict(os.environ)
        env.update(env_extra)
        env.update({"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                    "ANSIBLE_CALLBACKS_ENABLED": "agbotkit.dr.incident_timeline",
                    "INCIDENT_TIMELINE_REPORTS_DIR": str(reports),
                    "ANSIBLE_NOCOLOR": "1",
                    "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"})
        faults = [sinks.down(c) for c in down]
        try:
            start = time.time()
            proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", inventory,
                                   "playbooks/incident_drill.yml", "-e", f"@{vars_file}"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
            wall = time.time() - start
        finally:
            for f in faults:
                f.unlink(missing_ok=True)
        folders = [p for p in reports.iterdir() if p.is_dir()] if reports.exists() else []
        assert len(folders) == 1, f"expected one incident folder in {reports}: {folders}\n{proc.stdout[-3000:]}"
        folder = folders[0]
        timeline = json.loads((folder / "timeline.json").read_text())
        ident = timeline["incident"]["incident_id"]
        cache[name] = {"proc": proc, "wall": wall, "folder": folder, "timeline": timeline, "id": ident,
                       "log": [json.loads(line) for line in (folder / "communication.jsonl").read_text().splitlines()],
                       "records": {c: [r for r in sinks.records(c) if ident in json.dumps(r)] for c in CHANNELS},
                       "secrets": {**sinks.lab_secrets, **own}}
        return cache[name]

    return _run


@pytest.fixture(scope="module")
def ok_run(drill):
    run = drill("all-channels")
    assert run["proc"].returncode == 0, run["proc"].stdout[-4000:] + run["proc"].stderr[-2000:]
    return run


# --------------------------------------------------------------------------- reports
def test_run_writes_all_report_files(ok_run):
    for name in ("timeline.json", "report.md", "report.html", "postmortem.md", "communication.jsonl"):
        assert (ok_run["folder"] / name).stat().st_size > 0, name
    assert ok_run["folder"].name == ok_run["id"]
    assert ok_run["id"].startswith("INC-")
    assert f"incident_timeline: report in {ok_run['folder']}" in ok_run["proc"].stdout


def test_phases_add_up_to_the_run(ok_run):
    tl = ok_run["timeline"]
    run = tl["run"]
    phases = {p["name"]: p for p in tl["phases"]}
    assert list(phases) == ["Declare the incident", "preflight", "act", "verify", "Resolve the incident"]
    assert sum(p["seconds"] for p in tl["phases"]) == pytest.approx(run["seconds"], abs=0.05)
    assert run["end_epoch"] - run["start_epoch"] == pytest.approx(run["seconds"], abs=0.01)
    assert ok_run["wall"] - 15 < run["seconds"] <= ok_run["wall"]
    for name in ("preflight", "act", "verify"):
        assert phases[name]["seconds"] >= 1.0, name  # each holds a 1 s pause
    assert run["result"] == "successful"


def test_figures_and_events(ok_run):
    tl = ok_run["timeline"]
    rto, rpo = tl["figures"]["rto"], tl["figures"]["rpo"]
    assert rto["status"] == "met" and rto["objective"] == 14400 and 0 < rto["seconds"] < tl["run"]["seconds"]
    assert rpo["status"] == "met" and rpo["objective"] == 3600 and rpo["seconds"] == pytest.approx(300, abs=2)
    assert tl["figures"]["notify"]["status"] == "met"
    assert tl["incident"]["severity"] == "P0" and tl["incident"]["commander"] == "Ada Lovelace"
    kinds = [e["type"] for e in tl["events"]]
    assert kinds.count("pause") == 3 and "decision" in kinds and kinds.count("message") == 8
    assert [v["what"] for v in tl["verified"]] == ["drill phases ran in order", "communication log written"]
    postmortem = (ok_run["folder"] / "postmortem.md").read_text()
    assert "#### Why did it happen?" in postmortem and tl["incident"]["incident_time"] in postmortem


def test_communication_log(ok_run):
    log = ok_run["log"]
    assert [e["type"] for e in log][:1] == ["declare"] and log[-1]["type"] == "resolve"
    for entry in log:
        assert entry["incident_id"] == ok_run["id"] and entry["severity"] == "P0" and entry["time"] and entry["user"]
    sent = [e for e in log if e["type"] == "message"]
    assert sorted({e["channel"] for e in sent}) == ["email", "pagerduty", "slack", "statuspage"]
    assert all(e["outcome"] == "sent" and e["who"] == "Ada Lovelace" for e in sent)
    decision = [e for e in log if e["type"] == "decision"]
    assert decision and decision[0]["kind"] == "approval" and decision[0]["who"] == "Ada Lovelace"


def _png_pixels(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, prev, rows = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return [tuple(r[x:x + 3]) for r in rows for x in range(0, stride, bpp)]


def test_html_renders_the_chart_in_headless_chromium(ok_run, tmp_path):
    html = (ok_run["folder"] / "report.html").read_text()
    for external in ("<script", "<link", "src=", "url("):
        assert external not in html
    svg = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + len("</svg>")])
    rows = svg.findall(f"{SVG_NS}g[@class='phase']")
    assert [g.get("data-phase") for g in rows] == [p["name"] for p in ok_run["timeline"]["phases"]]
    assert all(float(r.get("width")) > 0 for g in rows for r in g.findall(f"{SVG_NS}rect"))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "incident_report.png"
    shot.unlink(missing_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={shot}", "--window-size=1280,900",
                    (ok_run["folder"] / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 5000
    pixels = _png_pixels(shot)
    assert len(set(pixels)) > 20, "blank screenshot"
    assert sum(p != (255, 255, 255) for p in pixels) > len(pixels) * 0.01
    for color in ((0x4E, 0x79, 0xA7), (0xF2, 0x8E, 0x2B), (0x59, 0xA1, 0x4F)):  # preflight, act, verify bars
        assert sum(p == color for p in pixels) > 100, f"no bar of colour {color} in the screenshot"


# --------------------------------------------------------------------------- channels
def test_each_channel_recorded_by_its_sink(ok_run):
    ident, rec = ok_run["id"], ok_run["records"]
    slack = rec["slack"]
    assert len(slack) == 2
    for r in slack:
        fields = {f["title"]: f["value"] for f in r["body"]["attachments"][0]["fields"]}
        assert fields["Severity"] == "P0" and fields["Incident"] == ident and r["body"]["text"].startswith("[P0] ")
    assert "RTO" in slack[-1]["body"]["text"] and "report.html" in slack[-1]["body"]["text"]
    pd = rec["pagerduty"]
    assert [r["body"]["event_action"] for r in pd] == ["trigger", "resolve"]
    for r in pd:
        assert r["status"] == 202 and r["body"]["dedup_key"] == ident
        assert r["body"]["payload"]["severity"] == "critical"
        assert r["body"]["payload"]["custom_details"]["severity"] == "P0"
    sp = rec["statuspage"]
    assert [(r["method"], r["status"]) for r in sp] == [("POST", 201), ("PATCH", 200)]
    assert [r["body"]["incident"]["status"] for r in sp] == ["investigating", "resolved"]
    assert all(r["body"]["incident"]["impact_override"] == "critical" and "[P0]" in r["body"]["incident"]["body"]
               for r in sp)
    mail = rec["smtp"]
    assert len(mail) == 2
    for r in mail:
        assert r["subject"].startswith(f"[P0] {ident}") and r["to"] == ["incidents@ag-botkit.example.com"]
        assert "Severity:  P0" in r["body"]


def test_a_message_is_one_task_and_a_log_entry_one_task(ok_run):
    """Issue #14 (CI time): a message to the four channels is one controller-side task (agbotkit.dr.incident_notify),
    each communication-log entry one agbotkit.dr.incident_log task: no module task per channel or per entry."""
    actions = [t["action"] for t in ok_run["timeline"]["tasks"]]
    assert actions.count("agbotkit.dr.incident_notify") == 2  # the drill's message and the final one
    assert actions.count("agbotkit.dr.incident_log") == 3  # declaration, approval, resolution
    slow = {"ansible.builtin.uri", "uri", "community.general.mail", "ansible.builtin.lineinfile", "lineinfile"}
    assert not slow & set(actions), sorted(slow & set(actions))
    assert len(ok_run["log"]) == 1 + 8 + 1 + 1  # declare, 2 x 4 messages, decision, resolve


def _without_channel_credential(channel: str, record: dict) -> dict:
    """The one place a channel's own credential must go: Slack's webhook path, PagerDuty's routing_key."""
    record = json.loads(json.dumps(record))
    if channel == "slack":
        record.pop("path", None)
    if channel == "pagerduty" and isinstance(record.get("body"), dict):
        record["body"].pop("routing_key", None)
    return record


def test_no_secret_in_sinks_log_reports_or_output(ok_run, drill):
    down = drill("slack-and-email-down", down=("slack", "smtp"))
    for run in (ok_run, down):
        values = [str(v) for v in run["secrets"].values() if isinstance(v, str | int) and len(str(v)) >= 6]
        assert len(values) >= 4
        texts = {"stdout": run["proc"].stdout, "stderr": run["proc"].stderr}
        for f in run["folder"].iterdir():
            texts[f.name] = f.read_text()
        for channel, records in run["records"].items():
            texts[f"sink {channel}"] = json.dumps([_without_channel_credential(channel, r) for r in records])
        leaks = [(where, v[:4] + "...") for where, text in texts.items() for v in values if v in text]
        assert not leaks, f"secret values found in: {leaks}"


def test_a_channel_down_warns_and_the_run_goes_on(drill):
    run = drill("slack-and-email-down", down=("slack", "smtp"))
    out = run["proc"].stdout + run["proc"].stderr
    assert run["proc"].returncode == 0, out[-4000:]
    assert "[WARNING]: notification channel 'slack' failed" in out.replace("\n", " ").replace("  ", " ")
    assert "notification channel 'email' failed" in out.replace("\n", " ")
    assert "failed=0" in out
    outcomes = {(e["channel"], e["outcome"]) for e in run["log"] if e["type"] == "message"}
    assert outcomes == {("slack", "failed"), ("email", "failed"), ("pagerduty", "sent"), ("statuspage", "sent")}
    assert run["records"]["slack"] == [] and run["records"]["smtp"] == []
    assert len(run["records"]["pagerduty"]) == 2
    tl = run["timeline"]
    assert tl["run"]["result"] == "successful" and tl["incident"]["resolved_at"]
    assert any(e["type"] == "warning" and "'slack'" in e["summary"] for e in tl["events"])
    # one warning event per failed channel and message (incident_notify returns them as a list)
    assert sorted(e["summary"].split("'")[1] for e in tl["events"] if e["type"] == "warning") == [
        "email", "email", "slack", "slack"]
    failed = {e["channel"]: e["detail"] for e in run["log"] if e["type"] == "message" and e["outcome"] == "failed"}
    assert failed["slack"].startswith("HTTP 503: Status code was 503 and not [200]"), failed
    assert failed["email"].startswith("Unable to Connect 127.0.0.1:"), failed
    assert "channel slack failed" in (run["folder"] / "postmortem.md").read_text()



def test_under_ansible_runner(tmp_path):
    """AWX runs playbooks through ansible-runner (stdout callback awx_display): the report is still written."""
    runner = pytest.importorskip("ansible_runner")
    reports = tmp_path / "reports"
    (tmp_path / "pdd").mkdir()
    result = runner.run(private_data_dir=str(tmp_path / "pdd"), project_dir=str(ROOT),
                        playbook=str(ROOT / "playbooks/incident_drill.yml"),
                        inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
                        extravars={"incident_drill_phase_seconds": 0, "incident_severity": "P2"},
                        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                                 "ANSIBLE_CALLBACKS_ENABLED": "agbotkit.dr.incident_timeline",
                                 "INCIDENT_TIMELINE_REPORTS_DIR": str(reports),
                                 "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"},
                        quiet=True)
    assert result.status == "successful"
    (folder,) = reports.iterdir()
    for name in ("timeline.json", "report.md", "report.html", "postmortem.md"):
        assert (folder / name).exists()

"""Pure parts of the incident stopwatch (plugins/module_utils/_timeline.py): times, RTO/RPO,
phase aggregation, SVG and report rendering."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"
if str(_COLLECTIONS) not in sys.path:  # the collection is importable from the checkout's collections path
    sys.path.insert(0, str(_COLLECTIONS))

from ansible_collections.agbotkit.dr.plugins.plugin_utils import timeline as tl  # noqa: E402

T0 = 1735725600.0  # 2025-01-01T10:00:00Z


# --------------------------------------------------------------------------- times
@pytest.mark.parametrize("text", [
    "2025-01-01T10:00:00Z",
    "2025-01-01T10:00:00+00:00",
    "2025-01-01T11:00:00+01:00",
    "2025-01-01 10:00:00",
    "2025-01-01 10:00:00+00",
    "2025-01-01T05:00:00-0500",
    1735725600,
    "1735725600",
])
def test_parse_time_forms_agree(text):
    assert tl.parse_time(text) == pytest.approx(T0)


def test_parse_time_fraction_and_garbage():
    assert tl.parse_time("2025-01-01T10:00:00.250Z") == pytest.approx(T0 + 0.25)
    assert tl.parse_time("yesterday") is None
    assert tl.parse_time("") is None
    assert tl.parse_time(None) is None
    assert tl.parse_time(True) is None
    assert tl.parse_time("2025-13-01T10:00:00Z") is None


def test_iso_and_duration():
    assert tl.iso(T0) == "2025-01-01T10:00:00Z"
    assert tl.iso(T0 + 0.5, precise=True) == "2025-01-01T10:00:00.500Z"
    assert tl.iso(None) is None
    assert tl.fmt_duration(3725) == "1:02:05"
    assert tl.fmt_duration(-5) == "-0:00:05"
    assert tl.fmt_duration(None) == "n/a"


# --------------------------------------------------------------------------- RTO / RPO
def test_rto_declared_to_resolved_met():
    rto = tl.compute_rto({"declared_at": "2025-01-01T10:00:00Z", "resolved_at": "2025-01-01T11:30:00Z"}, None)
    assert rto["seconds"] == 5400
    assert rto["status"] == "met"
    assert rto["objective"] == 14400


def test_rto_missed_and_objective_from_the_incident():
    inc = {"declared_epoch": T0, "resolved_epoch": T0 + 600, "rto_objective": 300}
    rto = tl.compute_rto(inc, None, objective=14400)
    assert (rto["seconds"], rto["objective"], rto["met"], rto["status"]) == (600, 300, False, "missed")


def test_rto_open_incident_counts_to_the_end_of_the_run():
    rto = tl.compute_rto({"declared_epoch": T0}, T0 + 42)
    assert (rto["seconds"], rto["status"]) == (42, "open")


def test_rto_without_declaration_is_unknown():
    assert tl.compute_rto({}, T0)["status"] == "unknown"


def test_rpo_incident_time_minus_newest_restored_data():
    rpo = tl.compute_rpo({"incident_time": "2025-01-01T10:00:00Z"}, "2025-01-01T09:40:00Z")
    assert (rpo["seconds"], rpo["status"]) == (1200, "met")
    rpo = tl.compute_rpo({"incident_epoch": T0, "rpo_objective": 600}, T0 - 1200)
    assert (rpo["seconds"], rpo["status"], rpo["objective"]) == (1200, "missed", 600)


def test_rpo_never_negative_and_not_reported():
    rpo = tl.compute_rpo({"incident_epoch": T0}, T0 + 30)
    assert rpo["seconds"] == 0 and rpo["raw_seconds"] == -30 and rpo["met"] is True
    assert tl.compute_rpo({"incident_epoch": T0}, None)["status"] == "not reported"


def test_notify_figure_against_deadline():
    inc = {"notify_deadline": "2025-01-01T10:15:00Z"}
    sent = [{"time": "2025-01-01T10:16:00Z", "outcome": "sent"}, {"time": "2025-01-01T10:05:00Z", "outcome": "failed"}]
    assert tl.notify_figure(inc, sent)["status"] == "missed"
    sent.append({"time": "2025-01-01T10:10:00.5Z", "outcome": "sent"})
    fig = tl.notify_figure(inc, sent)
    assert fig["status"] == "met" and fig["first_at"] == "2025-01-01T10:10:00Z"
    assert tl.notify_figure(inc, [])["status"] == "none sent"


# --------------------------------------------------------------------------- phases
def test_phase_of_tags_then_play_name():
    assert tl.phase_of(["always", "verify"], "Restore") == "verify"
    assert tl.phase_of(["act", "verify"], "x") == "act"
    assert tl.phase_of(["always"], "Declare the incident") == "Declare the incident"
    assert tl.phase_of(None, "") == "play"


def _task(phase, start, end, status="ok"):
    return {"phase": phase, "start": start, "end": end, "status": status}


def test_phases_partition_the_run_exactly():
    tasks = [_task("Declare", T0 + 1, T0 + 2), _task("preflight", T0 + 2.5, T0 + 4),
             _task("preflight", T0 + 4, T0 + 5), _task("act", T0 + 6, T0 + 9, "failed"),
             _task("verify", T0 + 9.2, T0 + 11), _task("Resolve", T0 + 11, T0 + 12)]
    segments, phases = tl.aggregate_phases(tasks, T0, T0 + 13)
    assert [p["name"] for p in phases] == ["Declare", "preflight", "act", "verify", "Resolve"]
    assert sum(p["seconds"] for p in phases) == pytest.approx(13)
    assert segments[0]["start"] == T0 and segments[-1]["end"] == T0 + 13
    for a, b in zip(segments, segments[1:], strict=False):
        assert a["end"] == b["start"]
    pre = phases[1]
    assert pre["tasks"] == 2 and pre["seconds"] == pytest.approx(3)  # 2 -> 5: gap before belongs to it
    assert phases[2]["status"] == "failed"


def test_phase_reappearing_is_one_phase_with_two_segments():
    tasks = [_task("verify", T0, T0 + 1), _task("act", T0 + 1, T0 + 2), _task("verify", T0 + 2, T0 + 3)]
    segments, phases = tl.aggregate_phases(tasks, T0, T0 + 3)
    assert len(segments) == 3
    assert [(p["name"], p["segments"], p["seconds"]) for p in phases] == [("verify", 2, 2), ("act", 1, 1)]


def test_phases_of_an_empty_run_and_unfinished_task():
    segments, phases = tl.aggregate_phases([], T0, T0 + 2)
    assert [p["name"] for p in phases] == ["run"] and phases[0]["seconds"] == 2
    segments, phases = tl.aggregate_phases([_task("act", T0 + 1, None), _task("verify", T0 + 2, None)], T0, T0 + 3)
    assert sum(p["seconds"] for p in phases) == pytest.approx(3)


def test_worst_status():
    assert tl.worst_status(["ok", "changed", "skipped"]) == "changed"
    assert tl.worst_status(["ok", "failed", "ignored"]) == "failed"
    assert tl.worst_status([]) == "ok"


def test_merge_verified_keeps_order_without_duplicates():
    merged = tl.merge_verified([["a", {"what": "b", "result": True}], ["a", "c", {"result": True, "what": "b"}]])
    assert merged == ["a", {"what": "b", "result": True}, "c"]


# --------------------------------------------------------------------------- rendering
def _timeline(resolved=True):
    tasks = [_task("Declare the incident", T0, T0 + 1), _task("preflight", T0 + 1, T0 + 3),
             _task("act", T0 + 3, T0 + 8, "failed"), _task("verify", T0 + 8, T0 + 9)]
    segments, phases = tl.aggregate_phases(tasks, T0, T0 + 10)
    for s in segments:
        s["start_iso"] = tl.iso(s["start"], True)
    inc = {"incident_id": "INC-1", "severity": "P0", "commander": "Ada <ada@example.com>",
           "incident_time": "2025-01-01T09:30:00Z", "declared_at": tl.iso(T0), "declared_epoch": T0,
           "notify_deadline": tl.iso(T0 + 900)}
    if resolved:
        inc["resolved_epoch"] = T0 + 9
        inc["resolved_at"] = tl.iso(T0 + 9)
    return {
        "run": {"id": "INC-1", "playbook": "playbooks/x.yml", "start": tl.iso(T0, True), "end": tl.iso(T0 + 10, True),
                "start_epoch": T0, "end_epoch": T0 + 10, "seconds": 10, "result": "failed"},
        "incident": inc,
        "figures": {"rto": tl.compute_rto(inc, T0 + 10), "rpo": tl.compute_rpo(inc, "2025-01-01T09:10:00Z"),
                    "notify": tl.notify_figure(inc, [{"time": tl.iso(T0 + 60), "outcome": "sent"}])},
        "phases": phases, "segments": segments, "tasks": [],
        "events": [{"time": tl.iso(T0 + 2), "type": "decision", "summary": "approval by Ada: <go>"},
                   {"time": tl.iso(T0 + 60), "type": "message", "channel": "slack", "outcome": "failed",
                    "summary": "slack failed"}],
        "verified": ["row counts match", {"what": "checksums", "result": False, "detail": "orders"}],
        "failures": [{"time": tl.iso(T0 + 7), "task": "Restore | load", "host": "db1", "status": "failed",
                      "where": "role db_restore, tasks/main.yml:3", "msg": "boom"}],
    }


def test_svg_has_one_row_per_phase_and_the_rto_budget():
    timeline = _timeline()
    svg = tl.render_svg(timeline)
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    rows = root.findall("s:g[@class='phase']", ns)
    assert [g.get("data-phase") for g in rows] == [p["name"] for p in timeline["phases"]]
    for g in rows:
        rects = g.findall("s:rect", ns)
        assert rects and all(float(r.get("width")) > 0 for r in rects)
    failed = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if "failed" in (r.get("class") or "")]
    assert len(failed) == 1
    budget = root.find("s:g[@class='rto-budget']", ns)
    assert budget is not None and budget.find("s:rect[@class='budget']", ns) is not None
    assert len(budget.findall("s:rect[@class='used']", ns)) == len(timeline["phases"])
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing external


def test_svg_escapes_names():
    timeline = _timeline()
    timeline["phases"][0]["name"] = timeline["segments"][0]["phase"] = "<Declare & go>"
    ET.fromstring(tl.render_svg(timeline))  # still well-formed


def test_html_is_self_contained():
    page = tl.render_html(_timeline())
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "<script" not in page
    assert "src=" not in page and "<link" not in page
    assert "Ada &lt;ada@example.com&gt;" in page
    assert "INC-1" in page


def test_markdown_report_figures():
    md = tl.render_markdown(_timeline())
    assert "RTO (declared → resolved) 0:00:09 against 4:00:00: MET" in md
    assert "RPO (incident time − newest restored data) 0:20:00 against 1:00:00: MET" in md
    assert "| act | 0:00:05 | 1 | failed |" in md
    assert "Restore \\| load" in md


def test_postmortem_prefilled_with_questions_as_headings():
    pm = tl.render_postmortem(_timeline(), ["/r/INC-1/timeline.json", "/r/INC-1/communication.jsonl"])
    for heading in ("## Immediate (within 24 hours)", "### 1. Document timeline", "#### When did the incident start?",
                    "#### Detection time", "#### Response timeline", "#### Resolution time",
                    "### 2. Preserve evidence", "### 3. Update status", "## Short-term (within 1 week)",
                    "#### What happened?", "#### Why did it happen?", "#### How was it resolved?",
                    "#### What can we improve?", "### 2. Create action items", "### 3. Update documentation",
                    "## Long-term (within 1 month)", "### 2. Share learnings"):
        assert heading in pm
    assert "2025-01-01T09:30:00Z" in pm  # incident start
    assert "Restore | load on db1" in pm or "Restore \\| load" in pm
    assert "`/r/INC-1/communication.jsonl`" in pm
    assert "channel slack failed" in pm
    assert "Verified: checksums — FAILED (orders)" in pm
    assert pm.count("_To be answered by the incident commander._") >= 6


def test_open_incident_renders():
    timeline = _timeline(resolved=False)
    timeline["figures"]["rto"] = tl.compute_rto(timeline["incident"], T0 + 10)
    assert timeline["figures"]["rto"]["status"] == "open"
    assert "not resolved in this run" in tl.render_postmortem(timeline)
    assert "OPEN" in tl.render_markdown(timeline)

# -*- coding: utf-8 -*-
# Copyright (c) 2025, ag-botkit DevOps Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of the incident stopwatch (controller side only, no Ansible imports).

Used by the ``agbotkit.dr.incident_timeline`` callback: phase aggregation, and rendering of
``timeline.json``, ``report.md``, ``report.html`` (with an inline SVG chart) and ``postmortem.md``.
Everything here takes plain data and returns plain data or text, so it is unit tested without
running Ansible. Time parsing and the RTO/RPO figures live in ``timing`` (one place for the
collection) and are re-exported here.
"""

from __future__ import annotations

import html

from ansible_collections.agbotkit.dr.plugins.plugin_utils.timing import (
    DEFAULT_RPO_OBJECTIVE,
    DEFAULT_RTO_OBJECTIVE,
    compute_rpo,
    compute_rto,
    fmt_duration,
    iso,
    parse_time,
)

# Re-exported: the callback reads times and figures through this module; they are computed in timing only.
__all__ = ["DEFAULT_RPO_OBJECTIVE", "DEFAULT_RTO_OBJECTIVE", "compute_rpo", "compute_rto", "fmt_duration", "iso",
           "parse_time", "PHASE_TAGS", "aggregate_phases", "phase_of", "worst_status", "render_svg", "render_markdown",
           "phase_color", "render_html", "render_postmortem", "notify_figure", "merge_verified"]

PHASE_TAGS = ("preflight", "act", "verify", "report")

# Names of the facts the incident role and the scenarios set (the contract with the callback).
FACT_INCIDENT = "incident_timeline"
FACT_RECOVERED_DATA_TIME = "incident_timeline_recovered_data_time"
FACT_VERIFIED = "incident_timeline_verified"
FACT_WARNING = "incident_timeline_warning"

_STATUS_RANK = {"skipped": 0, "ok": 1, "changed": 2, "ignored": 3, "rescued": 3, "failed": 4, "unreachable": 5}


def phase_of(tags, play_name):
    """The phase of a task: its first phase tag in plan order, else the name of its play."""
    tagset = {str(t) for t in (tags or [])}
    for phase in PHASE_TAGS:
        if phase in tagset:
            return phase
    return play_name or "play"


def worst_status(statuses):
    """Aggregate status of one task over its hosts."""
    best = None
    for status in statuses:
        if best is None or _STATUS_RANK.get(status, 1) > _STATUS_RANK.get(best, 1):
            best = status
    return best or "ok"


def aggregate_phases(tasks, run_start, run_end):
    """Partition [run_start, run_end] over the tasks, then merge consecutive tasks of one phase.

    Each task owns the time from the end of the task before it (or the run's start) to its own
    end, so play starts and fact gathering count toward the phase that needed them, and the
    segments add up exactly to the run. Returns (segments, phases): segments in time order
    (phase, start, end, seconds, tasks, status); phases in order of first appearance
    (name, seconds, start, end, segments, tasks, status).
    """
    ordered = sorted((t for t in tasks if t.get("start") is not None), key=lambda t: t["start"])
    segments = []
    if run_start is None or run_end is None:
        return [], []
    cursor = run_start
    for index, task in enumerate(ordered):
        end = task.get("end") if task.get("end") is not None else task["start"]
        if index == len(ordered) - 1:
            end = run_end
        end = min(max(cursor, end), run_end)
        status = task.get("status", "ok")
        if segments and segments[-1]["phase"] == task["phase"]:
            seg = segments[-1]
            seg["end"] = end
            seg["tasks"] += 1
            seg["status"] = worst_status([seg["status"], status])
        else:
            segments.append({"phase": task["phase"], "start": cursor, "end": end, "tasks": 1, "status": status})
        cursor = end
    if not segments:
        segments.append({"phase": "run", "start": run_start, "end": run_end, "tasks": 0, "status": "ok"})
    elif segments[-1]["end"] < run_end:
        segments[-1]["end"] = run_end
    phases = {}
    for seg in segments:
        seg["seconds"] = round(seg["end"] - seg["start"], 3)
        phase = phases.setdefault(seg["phase"], {"name": seg["phase"], "seconds": 0.0, "start": seg["start"],
                                                 "end": seg["end"], "segments": 0, "tasks": 0, "status": "ok"})
        phase["seconds"] = round(phase["seconds"] + seg["end"] - seg["start"], 3)
        phase["end"] = seg["end"]
        phase["segments"] += 1
        phase["tasks"] += seg["tasks"]
        phase["status"] = worst_status([phase["status"], seg["status"]])
    return segments, list(phases.values())


# --------------------------------------------------------------------------- rendering

_COLORS = {"preflight": "#4e79a7", "act": "#f28e2b", "verify": "#59a14f", "report": "#76b7b2"}
_OTHER_COLORS = ("#9c755f", "#b07aa1", "#edc948", "#bab0ac", "#ff9da7", "#8cd17d")


def phase_color(name, index=0):
    return _COLORS.get(name, _OTHER_COLORS[index % len(_OTHER_COLORS)])


def _esc(value):
    return html.escape("" if value is None else str(value), quote=True)


def _nice_step(span):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if span / step <= 8:
            return step
    return 28800


def render_svg(timeline, width=960):
    """Inline SVG: one Gantt row (a <g class="phase">) per phase on the run's time scale, then
    the RTO budget bar: the objective as the full width, the measured RTO filled by phase."""
    segments = timeline.get("segments") or []
    phases = timeline.get("phases") or []
    run = timeline.get("run") or {}
    rto = (timeline.get("figures") or {}).get("rto") or {}
    start = parse_time(run.get("start_epoch", run.get("start"))) or 0.0
    end = parse_time(run.get("end_epoch", run.get("end"))) or start
    span = max(end - start, 0.001)
    label_w, right_pad, row_h, top = 190, 80, 26, 34
    plot_w = width - label_w - right_pad
    rows = len(phases)
    budget_top = top + rows * row_h + 46
    height = budget_top + 70
    colors = {p["name"]: phase_color(p["name"], i) for i, p in enumerate(phases)}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" class="incident-timeline" width="%d" height="%d" '
           'viewBox="0 0 %d %d" role="img" aria-label="Phases of the run against the RTO budget">'
           % (width, height, width, height),
           '<style>text{font-family:sans-serif;font-size:12px;fill:#222}.axis{stroke:#bbb;stroke-width:1}'
           '.failed{stroke:#d62728;stroke-width:3}.muted{fill:#666}</style>',
           '<text x="0" y="16" font-weight="bold">Phases of the run (%s)</text>' % _esc(fmt_duration(span))]
    step = _nice_step(span)
    tick = 0
    while tick <= span + 1e-9:
        x = label_w + plot_w * tick / span
        out.append('<line class="axis" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>' % (x, top - 4, x, top + rows * row_h))
        out.append('<text class="muted" x="%.1f" y="%d" text-anchor="middle">%s</text>'
                   % (x, top + rows * row_h + 14, _esc(fmt_duration(tick))))
        tick += step
    for row, phase in enumerate(phases):
        y = top + row * row_h
        out.append('<g class="phase" data-phase="%s">' % _esc(phase["name"]))
        out.append('<text x="0" y="%d">%s</text>' % (y + 17, _esc(phase["name"][:28])))
        for seg in (s for s in segments if s["phase"] == phase["name"]):
            x = label_w + plot_w * (seg["start"] - start) / span
            w = max(plot_w * (seg["end"] - seg["start"]) / span, 2.0)
            cls = "segment failed" if seg.get("status") in ("failed", "unreachable") else "segment"
            out.append('<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="2">'
                       '<title>%s: %s (%d tasks, %s)</title></rect>'
                       % (cls, x, y + 4, w, row_h - 8, colors[phase["name"]], _esc(phase["name"]),
                          _esc(fmt_duration(seg["end"] - seg["start"])), seg.get("tasks", 0), _esc(seg.get("status"))))
        out.append('<text class="muted" x="%d" y="%d" text-anchor="end">%s</text>'
                   % (width - 2, y + 17, _esc(fmt_duration(phase["seconds"]))))
        out.append("</g>")
    # RTO budget bar
    objective = float(rto.get("objective") or DEFAULT_RTO_OBJECTIVE)
    measured = rto.get("seconds")
    scale = max(objective, measured or 0.0)
    status = rto.get("status", "unknown")
    out.append('<g class="rto-budget">')
    out.append('<text x="0" y="%d" font-weight="bold">RTO budget %s: measured %s (%s)</text>'
               % (budget_top - 10, _esc(fmt_duration(objective)), _esc(fmt_duration(measured)), _esc(status)))
    out.append('<rect class="budget" x="%d" y="%d" width="%.1f" height="22" fill="#eee" stroke="#999"/>'
               % (label_w, budget_top, plot_w * objective / scale))
    out.append('<text x="0" y="%d">budget</text>' % (budget_top + 16))
    if measured:
        x = float(label_w)
        used_w = plot_w * measured / scale
        for phase in phases:
            w = used_w * (phase["seconds"] / span) if span else 0
            out.append('<rect class="used" x="%.1f" y="%d" width="%.1f" height="22" fill="%s">'
                       '<title>%s</title></rect>' % (x, budget_top, max(w, 1.0), colors[phase["name"]],
                                                     _esc(phase["name"])))
            x += w
        pct = 100.0 * measured / objective
        out.append('<text class="muted" x="%d" y="%d">%.2f%% of the RTO budget used</text>'
                   % (label_w, budget_top + 40, pct))
    out.append("</g></svg>")
    return "\n".join(out)


def _badge(figure):
    status = figure.get("status", "unknown")
    return {"met": "MET", "missed": "MISSED", "open": "OPEN"}.get(status, status.upper())


def _figure_line(name, figure):
    return "%s %s against %s: %s" % (name, fmt_duration(figure.get("seconds")),
                                     fmt_duration(figure.get("objective")), _badge(figure))


def _verified_text(item):
    if isinstance(item, dict):
        what = item.get("what") or item.get("name") or item.get("check") or ""
        result = item.get("result", item.get("ok", item.get("status")))
        detail = item.get("detail") or item.get("details") or ""
        text = str(what)
        if result is not None:
            text += " — %s" % ("ok" if result is True else "FAILED" if result is False else result)
        if detail:
            text += " (%s)" % detail
        return text
    return str(item)


def _md_cell(value):
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def render_markdown(timeline):
    inc = timeline.get("incident") or {}
    figs = timeline.get("figures") or {}
    run = timeline.get("run") or {}
    lines = ["# Incident report: %s" % (inc.get("incident_id") or run.get("id")), ""]
    lines += ["| | |", "|---|---|"]
    for key, label in (("incident_id", "Incident"), ("severity", "Severity"), ("commander", "Incident commander"),
                       ("incident_time", "Incident began"), ("detected_at", "Detected"),
                       ("declared_at", "Declared"), ("resolved_at", "Resolved")):
        lines.append("| %s | %s |" % (label, _md_cell(inc.get(key) or "n/a")))
    lines.append("| Playbook | %s |" % _md_cell(run.get("playbook")))
    lines.append("| Run | %s → %s (%s), %s |" % (run.get("start"), run.get("end"),
                                                 fmt_duration(run.get("seconds")), run.get("result")))
    lines += ["", "## Figures", "",
              "- " + _figure_line("RTO (declared → resolved)", figs.get("rto") or {}),
              "- " + _figure_line("RPO (incident time − newest restored data)", figs.get("rpo") or {})]
    notify = figs.get("notify") or {}
    if notify:
        lines.append("- First notification %s, deadline %s: %s" % (
            notify.get("first_at") or "none", notify.get("deadline") or "n/a", notify.get("status")))
    lines += ["", "## Phases", "", "| phase | duration | tasks | status |", "|---|---|---|---|"]
    for p in timeline.get("phases") or []:
        lines.append("| %s | %s | %d | %s |" % (_md_cell(p["name"]), fmt_duration(p["seconds"]), p["tasks"],
                                                p["status"]))
    lines += ["", "## Verified", ""]
    lines += ["- " + _md_cell(_verified_text(v)) for v in timeline.get("verified") or []] or ["- nothing reported"]
    lines += ["", "## What failed", ""]
    lines += ["- %s — %s on %s (%s): %s" % (f["time"], _md_cell(f["task"]), f["host"], _md_cell(f.get("where")),
                                            _md_cell(f.get("msg") or f["status"]))
              for f in timeline.get("failures") or []] or ["- nothing failed"]
    lines += ["", "## Events", ""]
    lines += ["- %s %s: %s" % (e.get("time"), e.get("type"), _md_cell(e.get("summary")))
              for e in timeline.get("events") or []] or ["- none"]
    lines += ["", "## Tasks", "", "| start | phase | role | task | host status | duration |",
              "|---|---|---|---|---|---|"]
    for t in timeline.get("tasks") or []:
        hosts = ", ".join("%s=%s" % (h, d.get("status")) for h, d in (t.get("hosts") or {}).items())
        lines.append("| %s | %s | %s | %s | %s | %s |" % (t.get("start"), _md_cell(t.get("phase")),
                                                          _md_cell(t.get("role") or ""), _md_cell(t.get("name")),
                                                          _md_cell(hosts), fmt_duration(t.get("seconds"))))
    lines.append("")
    return "\n".join(lines)


def render_html(timeline):
    inc = timeline.get("incident") or {}
    figs = timeline.get("figures") or {}
    run = timeline.get("run") or {}
    title = "Incident report: %s" % (inc.get("incident_id") or run.get("id"))

    def badge(fig):
        status = fig.get("status", "unknown")
        color = {"met": "#2ca02c", "missed": "#d62728", "open": "#ff7f0e"}.get(status, "#777")
        return '<span class="badge" style="background:%s">%s</span>' % (color, _esc(_badge(fig)))

    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (_esc(label), _esc(inc.get(key) or "n/a"))
                   for key, label in (("incident_id", "Incident"), ("severity", "Severity"),
                                      ("commander", "Incident commander"), ("incident_time", "Incident began"),
                                      ("detected_at", "Detected"), ("declared_at", "Declared"),
                                      ("resolved_at", "Resolved")))
    rows += "<tr><th>Run</th><td>%s → %s (%s), %s</td></tr>" % (
        _esc(run.get("start")), _esc(run.get("end")), _esc(fmt_duration(run.get("seconds"))), _esc(run.get("result")))
    rto, rpo = figs.get("rto") or {}, figs.get("rpo") or {}
    figures = ("<li>RTO (declared → resolved): <b>%s</b> against %s %s</li>"
               "<li>RPO (incident time − newest restored data): <b>%s</b> against %s %s</li>"
               % (_esc(fmt_duration(rto.get("seconds"))), _esc(fmt_duration(rto.get("objective"))), badge(rto),
                  _esc(fmt_duration(rpo.get("seconds"))), _esc(fmt_duration(rpo.get("objective"))), badge(rpo)))
    notify = figs.get("notify") or {}
    if notify:
        figures += "<li>First notification %s, deadline %s: %s</li>" % (
            _esc(notify.get("first_at") or "none"), _esc(notify.get("deadline") or "n/a"), _esc(notify.get("status")))
    phases = "".join("<tr><td>%s</td><td>%s</td><td>%d</td><td>%s</td></tr>"
                     % (_esc(p["name"]), _esc(fmt_duration(p["seconds"])), p["tasks"], _esc(p["status"]))
                     for p in timeline.get("phases") or [])
    verified = "".join("<li>%s</li>" % _esc(_verified_text(v)) for v in timeline.get("verified") or []) \
        or "<li>nothing reported</li>"
    failures = "".join(
        "<li>%s — %s on %s (%s): %s</li>" % (_esc(f["time"]), _esc(f["task"]), _esc(f["host"]),
                                             _esc(f.get("where")), _esc(f.get("msg") or f["status"]))
        for f in timeline.get("failures") or []) or "<li>nothing failed</li>"
    events = "".join("<li>%s <b>%s</b>: %s</li>" % (_esc(e.get("time")), _esc(e.get("type")), _esc(e.get("summary")))
                     for e in timeline.get("events") or []) or "<li>none</li>"
    tasks = "".join("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>"
                    % (_esc(t.get("start")), _esc(t.get("phase")), _esc(t.get("role") or ""), _esc(t.get("name")),
                       _esc(", ".join("%s=%s" % (h, d.get("status")) for h, d in (t.get("hosts") or {}).items())),
                       _esc(fmt_duration(t.get("seconds")))) for t in timeline.get("tasks") or [])
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
th{background:#f4f4f4}.badge{color:#fff;padding:1px 6px;border-radius:3px;font-size:12px}
h1{font-size:22px}h2{font-size:17px;margin-top:22px}
</style></head><body>
<h1>%(title)s</h1>
<table>%(rows)s</table>
<h2>Figures</h2><ul>%(figures)s</ul>
<h2>Timeline</h2>
%(svg)s
<h2>Phases</h2><table><tr><th>phase</th><th>duration</th><th>tasks</th><th>status</th></tr>%(phases)s</table>
<h2>Verified</h2><ul>%(verified)s</ul>
<h2>What failed</h2><ul>%(failures)s</ul>
<h2>Events</h2><ul>%(events)s</ul>
<h2>Tasks</h2><table><tr><th>start</th><th>phase</th><th>role</th><th>task</th><th>hosts</th><th>duration</th></tr>
%(tasks)s</table>
</body></html>
""" % {"title": _esc(title), "rows": rows, "figures": figures, "svg": render_svg(timeline), "phases": phases,
       "verified": verified, "failures": failures, "events": events, "tasks": tasks}


_TODO = "_To be answered by the incident commander._"


def render_postmortem(timeline, files=None):
    """The plan's post-incident procedures as a document: facts pre-filled, questions as headings."""
    inc = timeline.get("incident") or {}
    figs = timeline.get("figures") or {}
    run = timeline.get("run") or {}
    rto, rpo, notify = figs.get("rto") or {}, figs.get("rpo") or {}, figs.get("notify") or {}
    failures = timeline.get("failures") or []
    events = timeline.get("events") or []
    messages = [e for e in events if e.get("type") == "message"]
    decisions = [e for e in events if e.get("type") in ("decision", "approval", "override", "pause")]
    ident = inc.get("incident_id") or run.get("id")
    out = ["# Post-mortem: %s" % ident, "",
           "_Draft generated by agbotkit.dr.incident_timeline at %s from the run of `%s`. "
           "Facts below are measured; every heading marked as a question needs a person's answer._"
           % (run.get("end"), run.get("playbook")), "",
           "| | |", "|---|---|",
           "| Severity | %s |" % _md_cell(inc.get("severity") or "n/a"),
           "| Incident commander | %s |" % _md_cell(inc.get("commander") or "n/a"),
           "| RTO | %s |" % _figure_line("measured", rto),
           "| RPO | %s |" % _figure_line("measured", rpo),
           "| Run result | %s |" % _md_cell(run.get("result")), "",
           "## Immediate (within 24 hours)", "",
           "### 1. Document timeline", "",
           "#### When did the incident start?", "", "- %s" % (inc.get("incident_time") or "n/a"), "",
           "#### Detection time", "", "- %s" % (inc.get("detected_at") or inc.get("declared_at") or "n/a"),
           "- Declared: %s" % (inc.get("declared_at") or "n/a"), "",
           "#### Response timeline", ""]
    first = [("incident began", inc.get("incident_time")), ("detected", inc.get("detected_at")),
             ("declared", inc.get("declared_at"))]
    if notify.get("first_at"):
        first.append(("first notification (deadline %s: %s)" % (notify.get("deadline"), notify.get("status")),
                      notify.get("first_at")))
    rows = [(when, what) for what, when in first if when]
    rows += [(s["start_iso"], "phase %s started (%s)" % (s["phase"], fmt_duration(s["seconds"])))
             for s in timeline.get("segments") or []]
    rows += [(e.get("time"), "%s: %s" % (e.get("type"), e.get("summary"))) for e in events]
    rows += [(f["time"], "FAILED: %s on %s" % (f["task"], f["host"])) for f in failures]
    if inc.get("resolved_at"):
        rows.append((inc.get("resolved_at"), "resolved"))
    out += ["| time (UTC) | what |", "|---|---|"]
    out += ["| %s | %s |" % (_md_cell(w), _md_cell(t)) for w, t in sorted(rows, key=lambda r: str(r[0]))]
    out += ["", "#### Resolution time", "",
            "- Resolved: %s" % (inc.get("resolved_at") or "not resolved in this run"),
            "- Time to recover (RTO, declared → resolved): %s" % fmt_duration(rto.get("seconds")),
            "- Data lost (RPO, incident time − newest restored data point %s): %s"
            % (rpo.get("recovered_data_time") or "not reported", fmt_duration(rpo.get("seconds"))), "",
            "### 2. Preserve evidence", "",
            "Kept automatically in this folder:", ""]
    out += ["- `%s`" % f for f in (files or [])]
    out += ["", "- [ ] Logs (application, database, AWS CloudTrail) collected", "- [ ] Metrics exported",
            "- [ ] Screenshots attached", "- [ ] Configuration states captured", "",
            "### 3. Update status", ""]
    out += ["- %s %s: %s" % (m.get("time"), m.get("channel"), _md_cell(m.get("summary"))) for m in messages] \
        or ["- no message recorded"]
    out += ["", "- [ ] Internal notification", "- [ ] External status page", "- [ ] Customer communication", "",
            "## Short-term (within 1 week)", "",
            "### 1. Conduct post-mortem", "",
            "#### What happened?", ""]
    out += ["- Failed: %s on %s (%s): %s" % (
        _md_cell(f["task"]), f["host"], _md_cell(f.get("where")), _md_cell(f.get("msg") or f["status"]))
        for f in failures] or ["- No task failed during the run."]
    out += ["", _TODO, "", "#### Why did it happen?", "", _TODO, "", "#### How was it resolved?", ""]
    out += ["- Phase %s: %s" % (p["name"], fmt_duration(p["seconds"])) for p in timeline.get("phases") or []]
    out += ["- Verified: %s" % _md_cell(_verified_text(v)) for v in timeline.get("verified") or []]
    out += ["- Decision: %s" % _md_cell(d.get("summary")) for d in decisions]
    out += ["", _TODO, "", "#### What can we improve?", ""]
    hints = []
    if rto.get("status") == "missed":
        hints.append("RTO objective missed")
    if rpo.get("status") == "missed":
        hints.append("RPO objective missed")
    if rpo.get("status") == "not reported":
        hints.append("the recovery did not report its newest restored data point (RPO unknown)")
    if notify.get("status") == "missed":
        hints.append("first notification after the severity's deadline")
    hints += ["channel %s failed" % m.get("channel") for m in messages if m.get("outcome") == "failed"]
    out += ["- Measured: %s" % h for h in hints]
    out += ["", _TODO, "",
            "### 2. Create action items", "",
            "| kind | action | owner | due |", "|---|---|---|---|",
            "| Preventive measures | | | |", "| Process improvements | | | |",
            "| Documentation updates | | | |", "| Training needs | | | |", "",
            "### 3. Update documentation", "",
            "- [ ] Runbooks", "- [ ] Architecture diagrams", "- [ ] Recovery procedures", "",
            "## Long-term (within 1 month)", "",
            "### 1. Implement improvements", "",
            "#### Code changes", "", _TODO, "", "#### Infrastructure updates", "", _TODO, "",
            "#### Process changes", "", _TODO, "", "#### Additional monitoring", "", _TODO, "",
            "### 2. Share learnings", "",
            "- [ ] Team presentation", "- [ ] Written summary", "- [ ] Update training materials",
            "- [ ] Industry sharing (if appropriate)", ""]
    return "\n".join(out)


def notify_figure(incident, messages):
    """First message sent against the severity's notify deadline."""
    deadline = parse_time((incident or {}).get("notify_deadline"))
    sent = sorted(t for t in (parse_time(m.get("time")) for m in messages if m.get("outcome") == "sent")
                  if t is not None)
    first = sent[0] if sent else None
    if deadline is None:
        status = "n/a"
    elif first is None:
        status = "none sent"
    else:
        status = "met" if first <= deadline else "missed"
    return {"first_at": iso(first), "deadline": iso(deadline), "status": status}


def merge_verified(lists):
    """Union of the verified lists reported by hosts, in order, without duplicates."""
    seen, out = set(), []
    for items in lists:
        for item in items or []:
            key = repr(sorted(item.items())) if isinstance(item, dict) else repr(item)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out

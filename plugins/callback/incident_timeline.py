# -*- coding: utf-8 -*-
# Copyright (c) 2025, ag-botkit DevOps Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: incident_timeline
type: aggregate
short_description: The incident stopwatch, writes the evidence report of a recovery run
version_added: 0.1.0
description:
  - Records every play, role and task of a run (start, end, status per host, phase) and the pauses
    and approvals as events.
  - The phase of a task is its first tag among V(preflight), V(act), V(verify), V(report), else the name of its play.
  - At the end of the run writes, into one folder per incident (or per run when no incident was declared),
    C(timeline.json), C(report.md), C(report.html) (with an inline SVG chart of the phases against the RTO budget,
    no external resources) and C(postmortem.md) (the plan's post-incident procedures, pre-filled).
  - Computes RTO (declared to resolved) and RPO (incident time minus the newest data point the recovery restored)
    from facts set by the P(agbotkit.dr.incident#role) role and the scenario, and marks them against the objectives.
  - "Facts read (from the C(ansible_facts) of task results: C(set_fact), and the incident role's action plugins
    M(agbotkit.dr.incident_notify)): C(incident_timeline) (a dict set by the incident role:
    C(incident_id), C(severity), C(commander), C(incident_time), C(detected_at), C(declared_at),
    C(resolved_at),
    C(notify_deadline), C(report_dir), C(log_path), C(rto_objective), C(rpo_objective));
    C(incident_timeline_recovered_data_time) (set by the scenario: the newest data point it restored, ISO 8601
    or epoch);
    C(incident_timeline_verified) (set by the scenario: list of what was verified, strings or dicts with C(what),
    C(result), C(detail)); C(incident_timeline_warning) (set by the incident role when a channel fails: one text or a
    list of texts, one per failed channel; each shown as a warning and recorded as an event)."
  - Never writes a value from a result hidden by C(no_log). Never fails the play; its own errors become warnings.
  - Does not depend on the stdout callback, so it works under ansible-runner and AWX as well.
requirements:
  - enable in configuration (C(callbacks_enabled = agbotkit.dr.incident_timeline))
options:
  reports_dir:
    description:
      - Folder under which each incident (or run) gets its own folder, C(<reports_dir>/<incident_id or timestamp>).
      - A relative path is taken from the directory ansible-playbook runs in.
      - When the incident role recorded a C(report_dir) in the C(incident_timeline) fact, that folder is used.
    type: path
    default: ./reports
    env:
      - name: INCIDENT_TIMELINE_REPORTS_DIR
    ini:
      - section: callback_incident_timeline
        key: reports_dir
  rto_objective:
    description: Recovery time objective in seconds (the plan's 4 h), unless the incident fact carries one.
    type: int
    default: 14400
    env:
      - name: INCIDENT_TIMELINE_RTO_OBJECTIVE
    ini:
      - section: callback_incident_timeline
        key: rto_objective
  rpo_objective:
    description: Recovery point objective in seconds (the plan's 1 h), unless the incident fact carries one.
    type: int
    default: 3600
    env:
      - name: INCIDENT_TIMELINE_RPO_OBJECTIVE
    ini:
      - section: callback_incident_timeline
        key: rpo_objective
"""

import functools  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from ansible.plugins.callback import CallbackBase  # noqa: E402

try:
    from ansible_collections.agbotkit.dr.plugins.plugin_utils import timeline as tl
except ImportError:  # pragma: no cover - only when the collection is not on the collections path
    tl = None

_PAUSE_ACTIONS = frozenset(("pause", "ansible.builtin.pause", "ansible.legacy.pause"))
_MSG_LIMIT = 500


def _safe(method):
    """Run a callback method; any error of ours becomes one warning, never a failed play."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the stopwatch must never break a recovery
            self._warn("incident_timeline: %s failed: %s: %s" % (method.__name__, type(exc).__name__, exc))
            return None

    return wrapper


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "agbotkit.dr.incident_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._warned = set()
        self._reports_dir = os.path.abspath("reports")
        self._rto_objective = 14400
        self._rpo_objective = 3600
        self._run_start = time.time()
        self._playbook = None
        self._plays = []
        self._tasks = []
        self._task_by_uuid = {}
        self._incident = {}
        self._recovered = None
        self._verified = {}
        self._events = []
        self._failures = []
        self.disabled = tl is None
        if tl is None:
            self._warn("incident_timeline: agbotkit.dr plugin_utils not importable; no report will be written")

    # ------------------------------------------------------------------ helpers
    def _warn(self, msg):
        if msg in self._warned:
            return
        self._warned.add(msg)
        try:
            self._display.warning(msg)
        except Exception:  # noqa: BLE001, S110 - a display that cannot warn must not break the run
            pass

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        try:
            self._reports_dir = os.path.abspath(os.path.expanduser(str(self.get_option("reports_dir") or "reports")))
            self._rto_objective = int(self.get_option("rto_objective") or 14400)
            self._rpo_objective = int(self.get_option("rpo_objective") or 3600)
        except Exception as exc:  # noqa: BLE001
            self._warn("incident_timeline: bad option, using defaults: %s" % exc)

    def _current_play(self):
        return self._plays[-1] if self._plays else None

    def _start_task(self, task, handler=False):
        now = time.time()
        play = self._current_play()
        play_name = play["name"] if play else ""
        role = None
        if getattr(task, "_role", None) is not None:
            role = task._role.get_name()
        tags = [str(t) for t in (task.tags or [])]
        record = {
            "name": task.get_name().strip(),
            "action": task.action,
            "role": role,
            "play": play_name,
            "phase": tl.phase_of(tags, play_name),
            "tags": tags,
            "path": task.get_path() or None,
            "handler": handler,
            "no_log": bool(task.no_log) if isinstance(task.no_log, bool) else False,
            "start": now,
            "end": None,
            "hosts": {},
        }
        self._tasks.append(record)
        self._task_by_uuid[task._uuid] = record
        if play is not None:
            play["tasks"] += 1

    def _record(self, result, status):
        now = time.time()
        task = result.task
        record = self._task_by_uuid.get(task._uuid)
        if record is None:  # a result without a task start (e.g. implicit meta); record it now
            self._start_task(task)
            record = self._task_by_uuid[task._uuid]
        host = result.host.get_name()
        res = result.result or {}
        hidden = bool(record["no_log"] or res.get("censored") or res.get("_ansible_no_log"))
        if status == "ok" and res.get("changed"):
            status = "changed"
        entry = {"status": status, "end": now}
        if status in ("failed", "ignored", "unreachable"):
            msg = "output hidden (no_log)" if hidden else str(res.get("msg") or res.get("stderr") or "")[:_MSG_LIMIT]
            entry["msg"] = msg
            where = record["path"] or ""
            if record["role"]:
                where = "role %s, %s" % (record["role"], where)
            self._failures.append({"time": tl.iso(now), "task": record["name"], "host": host, "status": status,
                                   "phase": record["phase"], "where": where, "msg": msg})
        record["hosts"][host] = entry
        record["end"] = now if record["end"] is None else max(record["end"], now)
        if hidden:
            return
        if task.action in _PAUSE_ACTIONS and status in ("ok", "changed"):
            self._pause_event(record, res)
        self._read_facts(host, res)
        for item in res.get("results") or []:
            if isinstance(item, dict) and not item.get("_ansible_no_log") and not item.get("censored"):
                self._read_facts(host, item)

    def _pause_event(self, record, res):
        seconds = res.get("delta")
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            seconds = time.time() - record["start"]
        answered = bool(res.get("user_input"))
        self._events.append({"time": tl.iso(record["start"], True), "type": "pause",
                             "summary": "%s: paused %s%s" % (record["name"], tl.fmt_duration(seconds),
                                                             ", answered" if answered else ""),
                             "seconds": round(seconds, 3), "task": record["name"]})

    def _read_facts(self, host, res):
        facts = res.get("ansible_facts")
        if not isinstance(facts, dict):
            return
        incident = facts.get(tl.FACT_INCIDENT)
        if isinstance(incident, dict):
            self._incident.update(incident)
        if tl.FACT_RECOVERED_DATA_TIME in facts:
            self._recovered = facts[tl.FACT_RECOVERED_DATA_TIME]
        warnings = facts.get(tl.FACT_WARNING)
        for warning in warnings if isinstance(warnings, list) else [warnings]:  # one text, or a list of them
            if warning:
                self._warn(str(warning).strip())
                self._events.append({"time": tl.iso(time.time(), True), "type": "warning",
                                     "summary": str(warning).strip()})
        verified = facts.get(tl.FACT_VERIFIED)
        if isinstance(verified, list):
            self._verified[host] = verified
        elif isinstance(verified, (str, dict)):
            self._verified.setdefault(host, []).append(verified)

    def _read_log(self):
        """Messages and decisions from the incident's communication log (JSON Lines)."""
        path = self._incident.get("log_path")
        if not path or not os.path.exists(path):
            return []
        events = []
        ident = self._incident.get("incident_id")
        with open(path, encoding="utf-8") as handle:
            for number, raw in enumerate(handle, 1):
                text = raw.strip()
                if not text:
                    continue
                try:
                    entry = json.loads(text)
                except ValueError:
                    self._warn("incident_timeline: %s line %d is not JSON; skipped" % (path, number))
                    continue
                if ident and entry.get("incident_id") not in (None, ident):
                    continue
                kind = entry.get("type", "entry")
                if kind == "message":
                    summary = "%s %s (%s): %s" % (entry.get("channel"), entry.get("outcome"), entry.get("detail", ""),
                                                  str(entry.get("message", "")).splitlines()[0][:160]
                                                  if entry.get("message") else "")
                elif kind == "decision":
                    summary = "%s by %s: %s%s" % (entry.get("kind", "decision"), entry.get("who"),
                                                  entry.get("decision"),
                                                  " (%s)" % entry["reason"] if entry.get("reason") else "")
                else:
                    summary = "%s by %s" % (kind, entry.get("who"))
                events.append({"time": entry.get("time"), "type": kind, "summary": summary,
                               "channel": entry.get("channel"), "outcome": entry.get("outcome"),
                               "who": entry.get("who")})
        return events

    # ------------------------------------------------------------------ events
    @_safe
    def v2_playbook_on_start(self, playbook):
        self._run_start = time.time()
        self._playbook = getattr(playbook, "_file_name", None)

    @_safe
    def v2_playbook_on_play_start(self, play):
        now = time.time()
        if self._plays and self._plays[-1]["end"] is None:
            self._plays[-1]["end"] = now
        self._plays.append({"name": play.get_name().strip(), "start": now, "end": None, "tasks": 0,
                            "hosts": [str(h) for h in (play.hosts or [])] if isinstance(play.hosts, list)
                            else str(play.hosts)})

    @_safe
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start_task(task)

    @_safe
    def v2_playbook_on_handler_task_start(self, task):
        self._start_task(task, handler=True)

    @_safe
    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    @_safe
    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    @_safe
    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    @_safe
    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    @_safe
    def v2_playbook_on_stats(self, stats):
        self._write(stats)

    # ------------------------------------------------------------------ output
    def _build(self, stats, run_end):
        tasks = []
        for t in self._tasks:
            end = t["end"] if t["end"] is not None else t["start"]
            status = tl.worst_status(h["status"] for h in t["hosts"].values()) if t["hosts"] else "no hosts"
            tasks.append(dict(t, status=status, end=end, seconds=round(end - t["start"], 3)))
        segments, phases = tl.aggregate_phases(tasks, self._run_start, run_end)
        for s in segments:
            s["start_iso"], s["end_iso"] = tl.iso(s["start"], True), tl.iso(s["end"], True)
        for p in phases:
            p["start"], p["end"] = tl.iso(p["start"], True), tl.iso(p["end"], True)
        for t in tasks:
            t["start"], t["end"] = tl.iso(t["start"], True), tl.iso(t["end"], True)
            for h in t["hosts"].values():
                h["end"] = tl.iso(h["end"], True)
        plays = [dict(p, start=tl.iso(p["start"], True), end=tl.iso(p["end"] or run_end, True)) for p in self._plays]
        summary, result = {}, "successful"
        for host in sorted(getattr(stats, "processed", {}) or {}):
            summary[host] = stats.summarize(host)
            if summary[host].get("failures") or summary[host].get("unreachable"):
                result = "failed"
        incident = dict(self._incident)
        log_events = self._read_log()
        events = sorted(self._events + log_events, key=lambda e: tl.parse_time(e.get("time")) or 0.0)
        figures = {
            "rto": tl.compute_rto(incident, run_end, self._rto_objective),
            "rpo": tl.compute_rpo(incident, self._recovered, self._rpo_objective),
            "notify": tl.notify_figure(incident, [e for e in log_events if e["type"] == "message"]),
        }
        if self._recovered is not None:
            incident["recovered_data_time"] = tl.iso(tl.parse_time(self._recovered)) or str(self._recovered)
        return {
            "schema": 1,
            "run": {"id": incident.get("incident_id") or self._run_id(), "playbook": self._playbook,
                    "start": tl.iso(self._run_start, True), "end": tl.iso(run_end, True),
                    "start_epoch": round(self._run_start, 3), "end_epoch": round(run_end, 3),
                    "seconds": round(run_end - self._run_start, 3), "result": result,
                    "user": self._user(), "hosts": summary},
            "incident": incident,
            "objectives": {"rto": figures["rto"]["objective"], "rpo": figures["rpo"]["objective"]},
            "figures": figures,
            "phases": phases,
            "segments": segments,
            "plays": plays,
            "tasks": tasks,
            "events": events,
            "verified": tl.merge_verified(self._verified.values()),
            "failures": self._failures,
        }

    def _run_id(self):
        name = os.path.splitext(os.path.basename(self._playbook or "run"))[0]
        return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._run_start)), name)

    @staticmethod
    def _user():
        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001
            return None

    def _folder(self, timeline):
        folder = self._incident.get("report_dir")
        if not folder:
            ident = str(timeline["run"]["id"]).replace(os.sep, "_")
            folder = os.path.join(self._reports_dir, ident)
        return os.path.abspath(str(folder))

    @staticmethod
    def _write_file(path, text):
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)

    def _write(self, stats):
        run_end = time.time()
        timeline = self._build(stats, run_end)
        folder = self._folder(timeline)
        os.makedirs(folder, exist_ok=True)
        names = ["timeline.json", "report.md", "report.html", "postmortem.md"]
        files = [os.path.join(folder, n) for n in names]
        if self._incident.get("log_path"):
            files.append(self._incident["log_path"])
        timeline["files"] = files
        self._write_file(files[0], json.dumps(timeline, indent=2, sort_keys=False, default=str) + "\n")
        self._write_file(files[1], tl.render_markdown(timeline))
        self._write_file(files[2], tl.render_html(timeline))
        self._write_file(files[3], tl.render_postmortem(timeline, files))
        rto, rpo = timeline["figures"]["rto"], timeline["figures"]["rpo"]
        self._display.display("incident_timeline: report in %s (RTO %s %s, RPO %s %s)" % (
            folder, tl.fmt_duration(rto["seconds"]), rto["status"], tl.fmt_duration(rpo["seconds"]), rpo["status"]))

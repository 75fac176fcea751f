# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resume state of a scenario run (the runbook mechanism), as pure functions over a dict, and ``run``: what the
action plugin agbotkit.dr.run_state does with its validated options (controller side, no module process; issue #14).

A run state is one JSON file per scenario: the incident id, when the run was declared, its mode, the steps done
(``completed``, in order, each once) with when each was marked done (``phases``), what existed before the run
(``preexisting``, so a drill tears down only what it created) and ``status`` (running, completed or failed).
A later run of the same mode resumes a run that is running or failed; anything else starts a new one.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, RunStateError

RESUMABLE = ("running", "failed")
STATUSES = ("running", "completed", "failed")
_ISO = "%Y-%m-%dT%H:%M:%SZ"

# The options of agbotkit.dr.run_state (plugins/modules/run_state.py documents them), validated as AnsibleModule did.
ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "started", "choices": ["started", "step_done", "completed", "failed"]},
    "mode": {"type": "str", "default": "run"},
    "step": {"type": "str"},
    "incident_id": {"type": "str"},
    "resume_incident_id": {"type": "str"},
    "preexisting": {"type": "dict"},
}
REQUIRED_IF = [("state", "step_done", ["step"])]


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(_ISO)


def new_state(mode, now):
    return {"incident_id": "", "declared_at": _iso(now), "declared_epoch": now, "mode": mode, "completed": [],
            "phases": [], "preexisting": {}, "status": "running", "cursor_epoch": now}


def load(path):
    """The saved state, or None when there is none. A file that is not a run state is an error, not a fresh run."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunStateError("Failed to read the run state %s: %s" % (path, exc), path=path) from exc
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunStateError("The run state %s is not JSON (%s): move it away to start a new run, or repair it to "
                            "resume" % (path, exc), path=path) from exc
    if not isinstance(data, dict) or not isinstance(data.get("completed", []), list):
        raise RunStateError("The run state %s is not a run state (expected an object with a list 'completed'): "
                            "move it away to start a new run" % path, path=path)
    return data


def start(previous, mode, now, incident_id=None):
    """Resume ``previous`` when it is an unfinished run of the same mode, else begin a new run.

    With ``incident_id``, only a run of that incident is resumed (a run of another incident, or one that never
    recorded its incident, is not), and a new run records it at once.
    Returns (state, resumed). Resuming restarts the step clock (the time between runs is no step's).
    """
    if previous and previous.get("status") in RESUMABLE and previous.get("mode") == mode \
            and (not incident_id or previous.get("incident_id") == incident_id):
        state = dict(previous)
        state.setdefault("completed", [])
        state.setdefault("phases", [])
        state.setdefault("preexisting", {})
        state["status"] = "running"
        state["cursor_epoch"] = now
        return state, True
    return remember(new_state(mode, now), incident_id=incident_id), False


def remember(state, incident_id=None, preexisting=None):
    """Set the incident id and what existed before the run, each only once (a resumed run keeps the first)."""
    state = dict(state)
    if incident_id and not state.get("incident_id"):
        state["incident_id"] = incident_id
    if preexisting and not state.get("preexisting"):
        state["preexisting"] = dict(preexisting)
    return state


def step_done(state, step, now):
    """Mark a step done once: ``completed`` gains it, ``phases`` gains when it started and its seconds.

    A step starts when the previous step of this run was marked done (or when the run started or resumed).
    Marking a step already done changes nothing.
    """
    if not step:
        raise RunStateError("step_done needs the name of the step")
    state = dict(state)
    if step in state.get("completed", []):
        return state, False
    began = float(state.get("cursor_epoch") or state.get("declared_epoch") or now)
    state["completed"] = list(state.get("completed", [])) + [step]
    state["phases"] = list(state.get("phases", [])) + [
        {"step": step, "started": _iso(began), "done_at": _iso(now), "seconds": round(max(0.0, now - began), 1)}]
    state["cursor_epoch"] = now
    return state, True


def finish(state, status, now):
    if status not in STATUSES:
        raise RunStateError("status must be one of %s, not %s" % (", ".join(STATUSES), status))
    state = dict(state)
    state["status"] = status
    state["cursor_epoch"] = now
    return state


def save(path, state):
    """Write atomically (a crash mid-write leaves the previous state), mode 0600, in a 0700 folder."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".run_state-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(state, indent=4, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise RunStateError("Failed to write the run state %s: %s" % (path, exc), path=path) from exc


def run(params, check_mode, now):
    """Do what ``params`` (validated options) ask at time ``now``; the result the task reports.

    Raises an ``AgbotDrError`` (reported as the task's failure) when the file cannot be read, understood or written,
    or a step is marked before the run started. In check mode the state is computed and nothing is written.
    """
    path = params["path"]
    previous = load(path)
    resumed, marked = False, False
    if params["state"] == "started":
        state, resumed = start(previous, params["mode"], now, params.get("resume_incident_id"))
    elif previous is None:
        raise AgbotDrError("No run is recorded in %s: start the run (state=started) before %s"
                           % (path, params["state"]), path=path)
    elif params["state"] == "step_done":
        state, marked = step_done(previous, params["step"], now)
    else:
        state = finish(previous, params["state"], now)
    state = remember(state, params.get("incident_id"), params.get("preexisting"))
    if not check_mode:
        save(path, state)
    return {"changed": False, "run_state": state, "resumed": resumed, "step_marked": marked}

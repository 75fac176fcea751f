"""What a scenario run on the runbook mechanism (roles/runbook) leaves behind, read from the lab itself: the run state
file (action agbotkit.dr.run_state) and the notifications the lab's Slack sink received (dev/lab/services/sinks.py)."""

from __future__ import annotations

import importlib
import json
import sys
import urllib.request
from pathlib import Path

# the product's own writer of run states (action agbotkit.dr.run_state, plugins/plugin_utils/run_state.py), as Ansible
# imports it
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
_run_state = importlib.import_module("ansible_collections.agbotkit.dr.plugins.plugin_utils.run_state")


def state_path(lab: dict, name: str) -> Path:
    """The run state of a scenario in the lab: the lab inventory's dr_work_dir holds every scenario's state."""
    return Path(lab["lab_dir"]) / "region_failover" / f"{name}.json"


def run_state(lab: dict, name: str) -> dict:
    return json.loads(state_path(lab, name).read_text())


def forget_run(lab: dict, name: str) -> None:
    """Start the next run afresh (an unfinished run of the same mode is otherwise resumed)."""
    state_path(lab, name).unlink(missing_ok=True)


def seed_run(lab: dict, name: str, incident_id: str, completed: list[str], now: float, mode: str = "recover",
             status: str = "failed") -> dict:
    """Leave the run state a previous run would have left: that incident, those steps done, that status (failed, so
    that the next run of the same mode resumes it). Written by the product's own functions."""
    state, _ = _run_state.start(None, mode, now - 60, incident_id)
    for i, step in enumerate(completed):
        state, _ = _run_state.step_done(state, step, now - 50 + i)
    state = _run_state.finish(state, status, now - 10)
    _run_state.save(str(state_path(lab, name)), state)
    return state


def slack_messages(lab: dict, incident_id: str) -> list[str]:
    """The texts the incident's Slack channel received, oldest first."""
    with urllib.request.urlopen(f"{lab['env']['LAB_SINK_URL']}/_sink/slack", timeout=10) as resp:  # noqa: S310
        records = json.loads(resp.read())
    return [json.dumps(r["body"]) for r in records if incident_id in json.dumps(r)]

"""What a scenario run on the runbook mechanism (roles/runbook) leaves behind, read from the lab itself: the run state
file (module agbotkit.dr.run_state) and the notifications the lab's Slack sink received (dev/lab/services/sinks.py)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path


def state_path(lab: dict, name: str) -> Path:
    """The run state of a scenario in the lab: the lab inventory's dr_work_dir holds every scenario's state."""
    return Path(lab["lab_dir"]) / "region_failover" / f"{name}.json"


def run_state(lab: dict, name: str) -> dict:
    return json.loads(state_path(lab, name).read_text())


def forget_run(lab: dict, name: str) -> None:
    """Start the next run afresh (an unfinished run of the same mode is otherwise resumed)."""
    state_path(lab, name).unlink(missing_ok=True)


def slack_messages(lab: dict, incident_id: str) -> list[str]:
    """The texts the incident's Slack channel received, oldest first."""
    with urllib.request.urlopen(f"{lab['env']['LAB_SINK_URL']}/_sink/slack", timeout=10) as resp:  # noqa: S310
        records = json.loads(resp.read())
    return [json.dumps(r["body"]) for r in records if incident_id in json.dumps(r)]

"""Helper of the region-failover tests: run a playbook with a lab fault turned on as a named task starts.

A fault injected before the run can be caught by an earlier, legitimate check (rtds.stall makes the rtds-client pods
unready, so the rollout check stops the run before the RTDS probe). dev/lab/callback_plugins/lab_fault_at_task.py turns
the fault on at the step under test instead; the helper asserts that it fired (a renamed task fails the test, never
silently tests nothing) and removes the fault file after the run.
"""

from __future__ import annotations

import configparser
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _callbacks_enabled() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    configured = [c.strip() for c in cfg.get("defaults", "callbacks_enabled", fallback="").split(",") if c.strip()]
    return ",".join([*configured, "lab_fault_at_task"])


def run_with_fault_at(run_playbook, lab: dict, playbook: str, task: str, fault: str, *args: str,
                      options: dict | None = None, **kwargs):
    """run_playbook(playbook, *args, **kwargs) with fault `fault` turned on as the first task named `task` starts."""
    env = {"ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "dev" / "lab" / "callback_plugins"),
           "ANSIBLE_CALLBACKS_ENABLED": _callbacks_enabled(),
           "LAB_DIR": lab["lab_dir"], "LAB_FAULT_AT_TASK": task, "LAB_FAULT_AT_TASK_FAULT": fault,
           "LAB_FAULT_AT_TASK_OPTIONS": json.dumps(options or {})}
    try:
        proc = run_playbook(playbook, *args, env=env, **kwargs)
    finally:
        (Path(lab["lab_dir"]) / "faults" / fault).unlink(missing_ok=True)
    out = proc.stdout + proc.stderr
    assert f"[lab] fault {fault} turned on as task" in out, (
        f"fault {fault} was never turned on: no task named {task!r} started\n{out[-3000:]}")
    return proc

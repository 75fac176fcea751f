# Lab only (not shipped: dev/lab/ is in galaxy.yml build_ignore). GNU General Public License v3.0+
"""Turn a lab fault on at the moment a given task starts, so a test can fail exactly the step under test.

A fault injected before the run may be caught by an earlier, legitimate check (rtds.stall makes the rtds-client
pods unready, so the rollout check stops the run before the RTDS probe is reached). This callback writes the
fault file (<LAB_DIR>/faults/<name>, as dev/lab/labctl.py fault does) when the first task whose name contains
LAB_FAULT_AT_TASK starts, before that task runs:

    ANSIBLE_CALLBACK_PLUGINS=dev/lab/callback_plugins \
    ANSIBLE_CALLBACKS_ENABLED=agbotkit.dr.incident_timeline,lab_fault_at_task \
    LAB_FAULT_AT_TASK='Verify RTDS connectivity' LAB_FAULT_AT_TASK_FAULT=rtds.stall \
    LAB_FAULT_AT_TASK_OPTIONS='{}' ansible-playbook ...

It prints one line when it fires. Removing the fault file afterwards is the caller's job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: lab_fault_at_task
type: aggregate
short_description: Lab only - turn a lab fault on when a named task starts
description:
  - Writes <LAB_DIR>/faults/<LAB_FAULT_AT_TASK_FAULT> (JSON options from LAB_FAULT_AT_TASK_OPTIONS) when the first
    task whose name contains LAB_FAULT_AT_TASK starts.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lab_fault_at_task"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._at = os.environ.get("LAB_FAULT_AT_TASK", "")
        self._fault = os.environ.get("LAB_FAULT_AT_TASK_FAULT", "")
        self._options = json.loads(os.environ.get("LAB_FAULT_AT_TASK_OPTIONS") or "{}")
        self._lab_dir = Path(os.environ.get("LAB_DIR", ".lab"))
        self._fired = False

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._fired or not self._at or not self._fault or self._at not in task.get_name():
            return
        path = self._lab_dir / "faults" / self._fault
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self._options))
        self._fired = True
        self._display.display(f"[lab] fault {self._fault} turned on as task '{task.get_name()}' starts")

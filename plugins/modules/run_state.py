#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done on the controller by the action plugin plugins/action/run_state.py
# (logic: plugins/plugin_utils/run_state.py).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_state
short_description: Start, resume and mark the steps of a recovery run (the runbook's resume state)
version_added: 0.2.0
description:
  - "Keeps the resume state of a scenario run in one JSON file, O(path). The P(agbotkit.dr.runbook#role) role calls
    it; scenario playbooks need not."
  - "An action plugin: it runs on the controller, without a module process, and O(path) is a file on the controller,
    like the run's reports (which the C(agbotkit.dr.incident_timeline) callback writes there too), whatever host the
    task runs for. Every C(dr_control) host of the collection's inventories is C(localhost) with a local connection,
    so the file is where it was when this was a module. A C(~) in O(path) is the home of the user who runs
    C(ansible-playbook)."
  - "O(state=started) resumes an unfinished run (status V(running) or V(failed)) of the same O(mode), else begins a
    new one with a new declaration time. A completed run, or one of another mode, is never resumed."
  - "O(state=step_done) marks O(step) done, once; a step already done is left as it is. Each step records when it
    started (when the previous step was marked, or the run started or resumed) and when it was done."
  - "O(state=completed) and O(state=failed) set the status of the run."
  - "O(incident_id) and O(preexisting) are recorded once per run; a resumed run keeps the first values."
  - "The file is written atomically with mode C(0600). A file that is not a run state is an error (move it away to
    start a new run), never silently replaced."
  - "The result is reported as not changed: the file is the run's bookkeeping, not a change to the system
    recovered, so idempotence checks of a scenario measure the system alone."
extends_documentation_fragment:
  - agbotkit.dr.controller_action
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  path:
    description: The run state file. Its folder is created (mode C(0700)) when missing.
    type: path
    required: true
  state:
    description: What to do with the run.
    type: str
    choices: [started, step_done, completed, failed]
    default: started
  mode:
    description:
      - The run's mode (for example V(failover) or V(drill)); only an unfinished run of the same mode is resumed.
      - Used with O(state=started).
    type: str
    default: run
  step:
    description: The step to mark done. Required with O(state=step_done).
    type: str
  incident_id:
    description: The incident this run belongs to; recorded when the run has none yet.
    type: str
  resume_incident_id:
    description:
      - With O(state=started), resume an unfinished run only when it belongs to this incident; otherwise start a new
        run and record this incident id at once. A run of another incident, or one that never recorded its incident,
        is not resumed.
      - Empty or unset, any unfinished run of the same O(mode) is resumed (the default).
    type: str
  preexisting:
    description: What existed before the run (free-form); recorded when the run has none yet.
    type: dict
attributes:
  check_mode:
    support: full
    description: Computes the state it would write and writes nothing.
seealso:
  - module: agbotkit.dr.approval
"""

EXAMPLES = r"""
- name: Start or resume the region failover run
  agbotkit.dr.run_state:
    path: ~/.agbotkit-dr/region_failover.json
    mode: failover
  register: run

- name: Start or resume the run of one incident (a run of another incident is not resumed)
  agbotkit.dr.run_state:
    path: ~/.agbotkit-dr/security_breach.json
    mode: respond
    resume_incident_id: INC-20250101-100000-ab12

- name: Mark the database step done
  agbotkit.dr.run_state:
    path: ~/.agbotkit-dr/region_failover.json
    state: step_done
    step: database

- name: Skip what an earlier run did
  ansible.builtin.debug:
    msg: "steps done: {{ run.run_state.completed | join(', ') }}"
"""

RETURN = r"""
run_state:
  description: The run state after the call (what the file holds, or would hold in check mode).
  returned: always
  type: dict
  contains:
    incident_id:
      description: The incident of the run ('' until recorded).
      type: str
    declared_at:
      description: When the run began (ISO 8601 UTC); kept when resumed.
      type: str
    declared_epoch:
      description: The same, in epoch seconds.
      type: float
    mode:
      description: The run's mode.
      type: str
    status:
      description: V(running), V(completed) or V(failed).
      type: str
    completed:
      description: The steps done, in order, each once.
      type: list
      elements: str
    phases:
      description: One entry per step done, C(step), C(started), C(done_at) and C(seconds).
      type: list
      elements: dict
    preexisting:
      description: What existed before the run, as recorded by the first run.
      type: dict
  sample:
    incident_id: INC-20250101-100000-ab12
    declared_at: "2025-01-01T10:00:00Z"
    mode: failover
    status: running
    completed: [preflight, infrastructure]
resumed:
  description: With O(state=started), whether an unfinished run was resumed.
  returned: always
  type: bool
step_marked:
  description: With O(state=step_done), whether the step was newly marked (false when it was already done).
  returned: always
  type: bool
"""

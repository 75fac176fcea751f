#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done on the controller by the action plugin plugins/action/incident_log.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: incident_log
short_description: Append one entry to an incident's communication log (JSON Lines)
version_added: 0.2.0
description:
  - The incident role's communication log, one entry per call (declaration, decision, chain of custody, resolution;
    M(agbotkit.dr.incident_notify) writes the message entries the same way). An action plugin, it runs on the
    controller, without a module process.
  - "Each entry is one JSON line appended to the incident's C(log_path): C(time) (UTC with microseconds,
    V(2025-01-01T10:00:00.123456Z)), C(incident_id), C(severity), C(user), then the fields of O(entry) in their order.
    The file is created when missing and its mode set to C(0640); nothing in it is rewritten."
  - Run it with C(delegate_to=localhost) and C(run_once=true), as the role does.
extends_documentation_fragment:
  - agbotkit.dr.controller_action
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  incident:
    description: The declared incident (the C(incident_timeline) fact); needs C(incident_id), C(severity), C(user)
      and C(log_path).
    type: dict
    required: true
  entry:
    description: The entry's fields (C(type), C(who), C(outcome), ...); the caller scrubs secrets from them.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Writes nothing; reports changed.
seealso:
  - module: agbotkit.dr.incident_notify
"""

EXAMPLES = r"""
- name: Log a decision
  agbotkit.dr.incident_log:
    incident: "{{ hostvars['localhost']['incident_timeline'] }}"
    entry:
      type: decision
      kind: approval
      who: Ada Lovelace
      outcome: recorded
      decision: fail over to us-west-2
      reason: us-east-1 down
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
path:
  description: The communication log.
  returned: success
  type: str
entry:
  description: The entry's type.
  returned: success
  type: str
"""

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kill_switch_info
short_description: Read the trading bot's kill-switch state and health
version_added: 0.1.0
description:
  - Reads C(GET /api/kill-switch) and, with O(health=true), C(GET /health) of the trading bot's API.
  - Never changes anything. Connection errors, timeouts and HTTP 5xx answers are retried with backoff.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.kill_switch
options:
  health:
    description:
      - Also read C(GET /health).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Runs the same reads in check mode.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.kill_switch
"""

EXAMPLES = r"""
- name: Read the kill-switch state
  agbotkit.dr.kill_switch_info:
    url: http://127.0.0.1:59091
  register: ks

- name: Stop here unless trading is halted
  ansible.builtin.assert:
    that: ks.halted
    fail_msg: "the bot is {{ ks.kill_switch.state }} since {{ ks.kill_switch.since }}"
"""

RETURN = r"""
kill_switch:
  description: The bot's kill-switch status.
  returned: always
  type: dict
  contains:
    state:
      description: V(trading) or V(halted).
      type: str
      sample: halted
    since:
      description: When the bot entered this state.
      type: str
      sample: "2025-01-01T00:00:00Z"
    reason:
      description: The reason given with the last trigger.
      type: str
      sample: incident 42
    orders_written:
      description: Orders the bot has written (its own counter).
      type: int
      sample: 1234
halted:
  description: Whether trading is halted.
  returned: always
  type: bool
  sample: true
health:
  description: The body of C(GET /health).
  returned: when health is true
  type: dict
  sample: {"status": "ok"}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._killswitch import (  # noqa: E402
    HALTED,
    KillSwitchClient,
    kill_switch_argument_spec,
    public_status,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402


def argument_spec() -> dict:
    spec = kill_switch_argument_spec()
    spec.update(health=dict(type="bool", default=True))
    return spec


def run(module: AnsibleModule, result: dict) -> None:
    p = module.params
    client = KillSwitchClient(p["url"], p["token"], timeout=p["timeout"], retries=p["retries"],
                              validate_certs=p["validate_certs"])
    if p["health"]:
        result["health"] = client.health()
    status = client.status()
    result.update(kill_switch=public_status(status), halted=status["state"] == HALTED)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

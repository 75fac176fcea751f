# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The attributes every controller-side action of the collection shares (run_state, incident_notify,
    # incident_log: plugins/action/, docs/architecture.md). Each module documents its own check_mode.
    DOCUMENTATION = r"""
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin (no module process on a target).
  async:
    support: none
    description: Not asynchronous.
  diff_mode:
    support: none
    description: Returns no diff.
"""

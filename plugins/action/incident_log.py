# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin agbotkit.dr.incident_log: append one entry to the incident's communication log, on the controller.
Documentation: plugins/modules/incident_log.py."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.agbotkit.dr.plugins.plugin_utils import incident as inc


class ActionModule(ActionBase):
    """One JSON Lines entry (time, incident_id, severity, user, then the entry's fields), append only, mode 0640."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False
    _VALID_ARGS = frozenset(("incident", "entry"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        incident = self._task.args.get("incident") or {}
        entry = self._task.args.get("entry")
        problem = inc.check_incident(incident, ("incident_id", "severity", "user", "log_path"))
        if problem:
            return dict(result, failed=True, msg=problem)
        if not isinstance(entry, dict) or not entry:
            return dict(result, failed=True, msg="incident_log: entry must be a non-empty dictionary")
        line = inc.log_line(incident, dict(entry))
        result.update(changed=True, path=incident["log_path"], entry=entry.get("type", "entry"))
        if not self._task.check_mode:
            inc.append_line(incident["log_path"], line)
        return result

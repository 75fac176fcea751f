# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin agbotkit.dr.run_state: start, resume and mark the steps of a recovery run, on the controller.
Documentation: plugins/modules/run_state.py; logic: plugins/plugin_utils/run_state.py.

It was a module (a new Python process per task, about 0.3 s of CPU each, 4 to 20 times per scenario run; issue #14).
The run state file is the controller's: every dr_control host of inventories/ is localhost with a local connection,
so the file is where it always was, beside the reports.
"""

from __future__ import annotations

import time

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError
from ansible_collections.agbotkit.dr.plugins.plugin_utils import run_state as rs

NAME = "agbotkit.dr.run_state"


def validate(args):
    """(validated options, None), or (None, the message AnsibleModule gave for the same mistake)."""
    result = ArgumentSpecValidator(rs.ARGUMENT_SPEC, required_if=rs.REQUIRED_IF).validate(dict(args))
    try:
        first = result.errors[0]
    except IndexError:
        return result.validated_parameters, None
    msg = result.errors.msg
    if isinstance(first, UnsupportedError):
        msg = "Unsupported parameters for (%s) module: %s" % (NAME, msg)
    return None, msg


class ActionModule(ActionBase):
    """The runbook's resume state: one JSON file, written atomically (0600, folder 0700), never on a target."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        params, problem = validate(self._task.args)
        if problem:
            return dict(result, failed=True, msg=problem)
        try:
            result.update(rs.run(params, self._task.check_mode, time.time()))
        except AgbotDrError as err:
            details = dict(err.details)
            details.pop("msg", None)
            return dict(result, failed=True, msg=err.full_message(), **details)
        return result

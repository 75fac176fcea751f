# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every agbotkit.dr module ends: one exit_json, one fail_json path.

A module's main() builds its AnsibleModule and hands the work to ``run_module``::

    def main():
        module = AnsibleModule(argument_spec=..., supports_check_mode=True)
        run_module(module, run, result=dict(changed=False))

``run(module, result)`` fills ``result`` (a dict that is also reported when the run fails, so a failure shows what
was done up to then) and may return a dict, which is merged into it. It ends early by returning, never by calling
exit_json, and fails by raising an ``AgbotDrError`` (``_errors.py``), never by calling fail_json.
``cleanup(result)`` runs in a ``finally`` once ``run`` is over, before anything is reported: it closes connections
and may add what both outcomes report (the ``queries`` a connector recorded).

An ``AwsApiError`` (an AWS call failed) is reported through ``AnsibleAWSModule.fail_json_aws`` when the module
has it, so AWS failures keep amazon.aws's shape: "<msg>: <AWS error message>", the ``error`` code and message,
``response_metadata`` and the SDK versions.
"""

from __future__ import annotations

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, AwsApiError


def failure(err: AgbotDrError, result: dict) -> dict:
    """The keyword arguments of fail_json (besides msg) for err: the result so far, then the error's details."""
    out = dict(result)
    out.update(err.details)
    out.pop("msg", None)  # the message is always str(err)
    return out


def run_module(module, run, result: dict | None = None, cleanup=None) -> None:
    """Run run(module, result) and end the module once: exit_json(**result), or fail_json for an AgbotDrError."""
    result = {} if result is None else result
    try:
        try:
            returned = run(module, result)
        finally:
            if cleanup is not None:
                cleanup(result)
        if returned is not None and returned is not result:
            result.update(returned)
    except AgbotDrError as err:
        kwargs = failure(err, result)
        if isinstance(err, AwsApiError) and err.exception is not None and hasattr(module, "fail_json_aws"):
            module.fail_json_aws(err.exception, msg=err.msg, **kwargs)
        module.fail_json(msg=err.full_message(), **kwargs)
    module.exit_json(**result)

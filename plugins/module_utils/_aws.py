# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way this collection's AWS modules connect (docs: STYLE.md, after amazon.aws).

- ``aws_module(argument_spec, ...)``: an ``AnsibleAWSModule`` (it adds the common AWS options, reports a missing
  boto3/botocore and gives ``fail_json_aws``), with check mode supported unless said otherwise;
- ``aws_client(module, service, **backoff)``: ``module.client`` whose calls made with ``aws_retry=True`` retry with
  jittered backoff (``AWSRetry.jittered_backoff`` arguments: ``retries``, ``delay``, ``max_delay``);
- ``AWS_ERRORS``: the exceptions to catch around a call and raise again as
  ``AwsApiError("Failed to <verb> <object> <id>", e)`` (``_errors.py``); ``run_module`` (``_module.py``) reports it
  once, through ``module.fail_json_aws``;
- ``is_boto3_error_code``: amazon.aws's, to catch one error code before ``AWS_ERRORS``.
"""

from __future__ import annotations

try:
    import botocore
except ImportError:  # pragma: no cover - AnsibleAWSModule reports the missing library
    botocore = None

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) if botocore is not None else ()

__all__ = ["AWS_ERRORS", "aws_client", "aws_module", "is_boto3_error_code"]


def aws_module(argument_spec, **kwargs):
    """An AnsibleAWSModule for argument_spec; supports_check_mode defaults to True."""
    kwargs.setdefault("supports_check_mode", True)
    return AnsibleAWSModule(argument_spec=argument_spec, **kwargs)


def aws_client(module, service, **backoff):
    """A boto3 client of service whose calls made with aws_retry=True retry with jittered backoff."""
    return module.client(service, retry_decorator=AWSRetry.jittered_backoff(**backoff))

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aws_activity_info
short_description: Read the AWS API activity of a time window from CloudTrail (LookupEvents)
version_added: 0.2.0
description:
  - Calls CloudTrail C(LookupEvents) for O(start_time) to O(end_time) in the region, page by page, and returns
    every event as a flat record (time, event name and source, principal, access key, read-only, error code).
  - The equivalent of the plan's C(aws cloudtrail lookup-events); no collection has a module for it.
  - "In the lab, moto does not implement LookupEvents: the lab's AWS server records the calls it receives and
    answers from that record (dev/lab/services/cloudtrail.py, docs/lab.md)."
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
options:
  start_time:
    description: Start of the window, ISO 8601 (C(2025-01-01T00:00:00Z)) or epoch seconds.
    type: str
    required: true
  end_time:
    description: End of the window; empty means now.
    type: str
    default: ""
  max_events:
    description: Stop after this many events (the report says when it stopped early).
    type: int
    default: 5000
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: No diff.
seealso:
  - name: LookupEvents
    description: CloudTrail API reference.
    link: https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
"""

EXAMPLES = r"""
- name: API activity of the last six hours
  agbotkit.dr.aws_activity_info:
    start_time: "{{ '%Y-%m-%dT%H:%M:%SZ' | ansible.builtin.strftime(now().timestamp() - 21600, utc=true) }}"
  register: activity
"""

RETURN = r"""
events:
  description: The events, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    event_time:
      description: Epoch seconds.
      type: float
    event_name:
      description: The API operation.
      type: str
      sample: GetSecretValue
    event_source:
      description: The service.
      type: str
      sample: secretsmanager.amazonaws.com
    username:
      description: The principal (IAM user or role session name).
      type: str
    access_key_id:
      description: The access key used.
      type: str
    read_only:
      description: Whether the call only reads.
      type: bool
    error_code:
      description: The error the call got, if any.
      type: str
truncated:
  description: Whether O(max_events) stopped the listing early.
  returned: always
  type: bool
"""

import datetime
import json

from ansible_collections.agbotkit.dr.plugins.module_utils._aws import AWS_ERRORS, aws_client, aws_module
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, AwsApiError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module


def parse_time(text):
    text = str(text).strip()
    try:
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.timezone.utc)
    except ValueError:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def flatten(event):
    detail = {}
    try:
        detail = json.loads(event.get("CloudTrailEvent") or "{}")
    except ValueError:
        pass
    when = event.get("EventTime")
    epoch = when.timestamp() if hasattr(when, "timestamp") else float(when or 0)
    return {"event_time": epoch, "event_id": event.get("EventId"), "event_name": event.get("EventName"),
            "event_source": event.get("EventSource"), "username": event.get("Username") or "",
            "access_key_id": event.get("AccessKeyId") or "", "read_only": str(event.get("ReadOnly")).lower() == "true",
            "error_code": detail.get("errorCode") or "", "region": detail.get("awsRegion") or "",
            "source_ip": detail.get("sourceIPAddress") or ""}


def run(module, _result):
    p = module.params
    try:
        start = parse_time(p["start_time"])
        end = parse_time(p["end_time"]) if p["end_time"] else datetime.datetime.now(datetime.timezone.utc)
    except ValueError as exc:
        raise AgbotDrError("start_time and end_time must be ISO 8601 times or epoch seconds") from exc
    client = aws_client(module, "cloudtrail")
    events, token, truncated = [], None, False
    try:
        while True:
            kwargs = dict(StartTime=start, EndTime=end, MaxResults=50)
            if token:
                kwargs["NextToken"] = token
            page = client.lookup_events(aws_retry=True, **kwargs)
            events.extend(flatten(e) for e in page.get("Events", []))
            token = page.get("NextToken")
            if len(events) >= p["max_events"] and token:
                truncated = True
                break
            if not token:
                break
    except AWS_ERRORS as e:
        raise AwsApiError("Failed to look up CloudTrail events", e) from e
    return dict(changed=False, events=events[:p["max_events"]], truncated=truncated,
                start_time=start.isoformat(), end_time=end.isoformat())


def main():
    module = aws_module(dict(start_time=dict(type="str", required=True), end_time=dict(type="str", default=""),
                             max_events=dict(type="int", default=5000)))
    run_module(module, run)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: seconds_between
short_description: Seconds from one ISO 8601 time (or epoch) to another
version_added: 0.1.0
description:
  - "C(later | agbotkit.dr.seconds_between(earlier)) returns later minus earlier in seconds (a float).
    Accepts ISO 8601 with C(Z) or an offset (naive times are UTC) and epoch seconds."
  - "The same file provides C(agbotkit.dr.step_durations) - from a dict of step start times (epoch seconds, in
    the order the steps ran) and an end time, it returns a dict of step name to seconds."
options:
  _input:
    description: The later time.
    type: raw
    required: true
  earlier:
    description: The earlier time.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Data-loss window
  ansible.builtin.debug:
    msg: "{{ incident_time | agbotkit.dr.seconds_between(manifest.created_at) }} s"
"""

RETURN = r"""
_value:
  description: Seconds between the two times.
  type: float
"""

import datetime


def to_epoch(value):
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def seconds_between(later, earlier):
    return round(to_epoch(later) - to_epoch(earlier), 3)


def step_durations(starts, end):
    items = sorted(((k, to_epoch(v)) for k, v in (starts or {}).items()), key=lambda kv: kv[1])
    end = to_epoch(end)
    out = {}
    for i, (name, start) in enumerate(items):
        stop = items[i + 1][1] if i + 1 < len(items) else end
        out[name] = round(stop - start, 3)
    return out


class FilterModule:
    def filters(self):
        return {"seconds_between": seconds_between, "step_durations": step_durations}

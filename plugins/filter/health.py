# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: health_mismatches
short_description: What a health endpoint's JSON answer says differently from what is expected
version_added: 0.2.0
description:
  - Given the JSON body of a health endpoint and a dict of expectations (a dotted path into the body, e.g.
    C(database.host), and the value expected there, compared as text), returns one message per difference; an
    empty list when the answer is as expected. A path that does not exist is a difference.
  - The region failover uses it to prove the DR bot uses the restored database and has the intended kill-switch
    state.
options:
  _input:
    description: The parsed JSON body (the C(json) of ansible.builtin.uri).
    type: raw
    required: true
  expect:
    description: Dotted path to expected value.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The DR bot uses the restored database
  ansible.builtin.assert:
    that: "(health.json | agbotkit.dr.health_mismatches({'database.host': endpoint})) | length == 0"
"""

RETURN = r"""
_value:
  description: One message per difference.
  type: list
  elements: str
"""

_MISSING = object()


def _get(doc, path):
    cur = doc
    for part in str(path).split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def health_mismatches(body, expect):
    out = []
    for path, want in sorted((expect or {}).items()):
        have = _get(body if body is not None else {}, path)
        if have is _MISSING:
            out.append("%s is missing from the answer (expected %s)" % (path, want))
        elif str(have) != str(want):
            out.append("%s is %s, expected %s" % (path, have, want))
    return out


class FilterModule:
    def filters(self):
        return {"health_mismatches": health_mismatches}

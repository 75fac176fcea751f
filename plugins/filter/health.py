# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

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

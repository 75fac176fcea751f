# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

SERVER_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


def k8s_backup(objects):
    out = []
    for obj in objects or []:
        meta = obj.get("metadata") or {}
        if obj.get("kind") in ("Pod", "ReplicaSet") and meta.get("ownerReferences"):
            continue
        o = copy.deepcopy(obj)
        o.pop("status", None)
        m = o.setdefault("metadata", {})
        for key in SERVER_META:
            m.pop(key, None)
        ann = m.get("annotations") or {}
        ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        if not ann:
            m.pop("annotations", None)
        if o.get("kind") == "Service":
            spec = o.get("spec") or {}
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        out.append(o)
    return out


class FilterModule:
    def filters(self):
        return {"k8s_backup": k8s_backup}

# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: k8s_backup
short_description: Strip server-set fields from Kubernetes objects so a backup can be re-applied
version_added: 0.1.0
description:
  - Removes C(status), C(metadata.uid), C(metadata.resourceVersion), C(metadata.generation),
    C(metadata.creationTimestamp), C(metadata.managedFields), C(metadata.selfLink) and the
    C(kubectl.kubernetes.io/last-applied-configuration) annotation from each object, and the
    service's C(spec.clusterIP(s)), which the API server assigns.
  - Pods and ReplicaSets owned by a controller are dropped; their owners are backed up instead.
options:
  _input:
    description: A list of Kubernetes objects (as returned by kubernetes.core.k8s_info).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Objects ready to re-apply
  ansible.builtin.set_fact:
    resources: "{{ found.resources | agbotkit.dr.k8s_backup }}"
"""

RETURN = r"""
_value:
  description: The cleaned objects.
  type: list
  elements: dict
"""

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

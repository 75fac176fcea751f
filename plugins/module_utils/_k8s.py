# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading many kinds of a namespace in one module call (agbotkit.dr.k8s_resources): the pure part.

``read_kinds`` walks the kinds asked for, in their order, through two callables the module gives it (``resource``:
the API's resource for (api_version, kind), or None when the API does not serve it; ``find``: the objects of one
kind), so its decisions (what a missing kind does, which namespace applies, the shape of the result) are unit-tested
without a cluster.
"""

from __future__ import annotations

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import KubernetesReadError


def kind_label(item: dict) -> str:
    """How a kind is named in messages: ``apps/v1 Deployment``, ``v1 Namespace ag-botkit``."""
    label = "{0} {1}".format(item["api_version"], item["kind"])
    return label + (" " + item["name"] if item.get("name") else "")


def normalize_kinds(items: list) -> list[dict]:
    """The kinds asked for, each {api_version, kind, name}; a kind asked for twice (same name) is refused."""
    out, seen = [], set()
    for item in items or []:
        entry = {"api_version": item.get("api_version") or "v1", "kind": item["kind"], "name": item.get("name")}
        key = (entry["api_version"], entry["kind"], entry["name"])
        if key in seen:
            raise KubernetesReadError(
                "kinds lists {0} twice: list each kind once (the result has one entry per kind)".format(
                    kind_label(entry)))
        seen.add(key)
        out.append(entry)
    if not out:
        raise KubernetesReadError("kinds is empty: list at least one {api_version, kind} to read")
    return out


def missing_message(missing: list[dict], where: str) -> str:
    return ("the Kubernetes API at {0} does not serve {1}: check the api_version and kind (kubectl api-resources "
            "lists what it serves), or remove them from the list".format(
                where, ", ".join(kind_label(m) for m in missing)))


def read_kinds(items: list[dict], namespace: str | None, resource, find, on_missing: str = "fail",
               where: str = "the cluster") -> tuple[list[dict], list[dict]]:
    """Read each kind; return (one entry per kind in the order asked, the kinds the API does not serve).

    Each entry: api_version, kind, name, namespaced, api_found, resources. A namespaced kind is read in ``namespace``,
    a cluster-scoped one (Node, Namespace) cluster-wide. A kind the API does not serve fails the whole read before any
    object is read (``on_missing=fail``), or is returned with api_found false and no resources (``warn``).
    """
    found = [(item, resource(item["api_version"], item["kind"])) for item in items]
    missing = [item for item, res in found if res is None]
    if missing and on_missing == "fail":
        raise KubernetesReadError(missing_message(missing, where), missing=missing)
    out = []
    for item, res in found:
        entry = dict(item, namespaced=bool(res is not None and res.namespaced), api_found=res is not None,
                     resources=[])
        if res is not None:
            entry["resources"] = find(item, namespace if entry["namespaced"] else None)
        out.append(entry)
    return out, missing

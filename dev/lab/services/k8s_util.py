"""Pure helpers of the lab's Kubernetes emulator: selectors, patches, Tables, timestamps.

Nothing here touches the network or the store, so tests/unit can exercise it directly.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import re
from typing import Any

import jsonpatch

# ----------------------------------------------------------------------------- time


def now_iso() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(ts: str | None) -> str:
    """kubectl-style age ("42s", "5m", "3h", "2d") of an RFC 3339 timestamp."""
    if not ts:
        return "<unknown>"
    try:
        then = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<unknown>"
    secs = max(0, int((dt.datetime.now(tz=dt.UTC) - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


# ----------------------------------------------------------------------------- selectors

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[tuple[str, str, Any]]:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` into (key, op, value) requirements."""
    reqs: list[tuple[str, str, Any]] = []
    for part in _split_selector(text or ""):
        m = _SET_RE.match(part)
        if m:
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!exists", None))
        else:
            reqs.append((part, "exists", None))
    return reqs


def match_labels(labels: dict | None, reqs: list[tuple[str, str, Any]]) -> bool:
    labels = labels or {}
    for key, op, value in reqs:
        have = key in labels
        cur = labels.get(key)
        if op == "=" and cur != value:
            return False
        if op == "!=" and cur == value:
            return False
        if op == "in" and (not have or cur not in value):
            return False
        if op == "notin" and have and cur in value:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def selector_from_match_labels(selector: dict | None) -> str:
    """A label selector string from a LabelSelector object (matchLabels and matchExpressions)."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = (expr.get("operator") or "").lower()
        key = expr.get("key")
        vals = ",".join(expr.get("values") or [])
        if op in ("in", "notin"):
            parts.append(f"{key} {op} ({vals})")
        elif op == "exists":
            parts.append(key)
        elif op == "doesnotexist":
            parts.append(f"!{key}")
    return ",".join(parts)


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    reqs: list[tuple[str, str, str]] = []
    for part in _split_selector(text or ""):
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
    return reqs


def dig(obj: Any, dotted: str) -> Any:
    cur = obj
    for piece in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(piece)
    return cur


def match_fields(obj: dict, reqs: list[tuple[str, str, str]]) -> bool:
    for key, op, value in reqs:
        cur = dig(obj, key)
        cur_s = "" if cur is None else (str(cur).lower() if isinstance(cur, bool) else str(cur))
        if op == "=" and cur_s != value:
            return False
        if op == "!=" and cur_s == value:
            return False
    return True


# ----------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Lists merged element-wise by a key under strategic merge (the common ones of the core API).
STRATEGIC_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "tolerations": None,  # atomic-ish: replaced (real k8s also treats them as a plain list)
}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A practical subset of Kubernetes strategic merge patch.

    Dicts merge like a JSON merge patch; lists named in STRATEGIC_MERGE_KEYS merge element by
    element on their key (an element with `$patch: delete` is removed); `$patch: replace`
    replaces a dict; `$setElementOrder/...`, `$retainKeys` are accepted and ignored;
    `$deleteFromPrimitiveList/<field>` removes scalars from a list. Other lists are replaced.
    """
    if not isinstance(patch, dict):
        return strip_directives(copy.deepcopy(patch))
    if patch.get("$patch") == "replace":
        return strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        cur = result.get(key)
        merge_key = STRATEGIC_MERGE_KEYS.get(key)
        if isinstance(value, list) and isinstance(cur, list) and merge_key:
            result[key] = _merge_list(cur, value, merge_key)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(cur, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = strip_directives(copy.deepcopy(value))
    return result


def _merge_list(cur: list, patch: list, key: str) -> list:
    if not all(isinstance(x, dict) for x in cur + patch):
        return strip_directives(copy.deepcopy(patch))
    out = copy.deepcopy(cur)
    for item in patch:
        ident = item.get(key)
        idx = next((i for i, x in enumerate(out) if x.get(key) == ident), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strip_directives(copy.deepcopy(item)))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def strip_directives(obj: Any) -> Any:
    """Remove strategic-merge directive keys (`$patch`, `$setElementOrder/...`) everywhere."""
    if isinstance(obj, dict):
        return {k: strip_directives(v) for k, v in obj.items() if not k.startswith("$")}
    if isinstance(obj, list):
        return [strip_directives(x) for x in obj]
    return obj


def json_patch(target: dict, ops: list) -> dict:
    return jsonpatch.apply_patch(copy.deepcopy(target), ops, in_place=False)


def apply_patch(target: dict, patch: Any, content_type: str) -> dict:
    """Apply a PATCH body of the given Content-Type to `target` (never mutated)."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct == "application/json-patch+json" or isinstance(patch, list):
        return json_patch(target, patch)
    if ct == "application/merge-patch+json":
        return merge_patch(target, patch)
    # strategic-merge-patch+json, apply-patch+yaml (server-side apply) and anything else
    return strategic_merge_patch(target, patch)


# ----------------------------------------------------------------------------- secrets


def fold_string_data(obj: dict) -> dict:
    """Secret: move stringData into data (base64), as the API server does."""
    string_data = obj.pop("stringData", None)
    if string_data:
        data = dict(obj.get("data") or {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    return obj


# ----------------------------------------------------------------------------- tables (kubectl get)


def _cond(obj: dict, ctype: str) -> dict:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def _node_status(obj: dict) -> str:
    ready = _cond(obj, "Ready").get("status") == "True"
    s = "Ready" if ready else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def _pod_ready(obj: dict) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or []) or len(statuses)
    ready = sum(1 for c in statuses if c.get("ready"))
    return f"{ready}/{total}"


def table_columns(kind: str) -> list[tuple[str, Any]]:
    st = lambda o: o.get("status") or {}  # noqa: E731
    sp = lambda o: o.get("spec") or {}  # noqa: E731
    cols: dict[str, list[tuple[str, Any]]] = {
        "Node": [("Status", _node_status), ("Roles", lambda o: "<none>"),
                 ("Version", lambda o: st(o).get("nodeInfo", {}).get("kubeletVersion", ""))],
        "Pod": [("Ready", _pod_ready), ("Status", lambda o: st(o).get("phase", "Pending")),
                ("Restarts", lambda o: sum(c.get("restartCount", 0) for c in st(o).get("containerStatuses") or []))],
        "Deployment": [("Ready", lambda o: f"{st(o).get('readyReplicas', 0)}/{sp(o).get('replicas', 0)}"),
                       ("Up-to-date", lambda o: st(o).get("updatedReplicas", 0)),
                       ("Available", lambda o: st(o).get("availableReplicas", 0))],
        "StatefulSet": [("Ready", lambda o: f"{st(o).get('readyReplicas', 0)}/{sp(o).get('replicas', 0)}")],
        "ReplicaSet": [("Desired", lambda o: sp(o).get("replicas", 0)),
                       ("Current", lambda o: st(o).get("replicas", 0)),
                       ("Ready", lambda o: st(o).get("readyReplicas", 0))],
        "Namespace": [("Status", lambda o: st(o).get("phase", "Active"))],
        "Secret": [("Type", lambda o: o.get("type", "Opaque")), ("Data", lambda o: len(o.get("data") or {}))],
        "ConfigMap": [("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
        "Service": [("Type", lambda o: sp(o).get("type", "ClusterIP")),
                    ("Cluster-IP", lambda o: sp(o).get("clusterIP", "<none>"))],
        "Job": [("Status", lambda o: "Complete" if _cond(o, "Complete").get("status") == "True" else "Running")],
    }
    return cols.get(kind, [])


def to_table(kind: str, objs: list[dict], resource_version: str) -> dict:
    extra = table_columns(kind)
    defs = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    defs += [{"name": n, "type": "string", "format": "", "description": n, "priority": 0} for n, _ in extra]
    defs.append({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0})
    rows = []
    for o in objs:
        meta = o.get("metadata") or {}
        cells = [meta.get("name", "")] + [fn(o) for _, fn in extra] + [age(meta.get("creationTimestamp"))]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": meta}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": defs, "rows": rows}

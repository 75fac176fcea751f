# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import hashlib

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def activity_review(events, allow):
    allow = {str(a) for a in (allow or [])}
    by = {}
    for e in events or []:
        name = e.get("username") or e.get("access_key_id") or "unknown"
        p = by.setdefault(name, {"principal": name, "access_key_ids": set(), "calls": 0, "writes": 0, "errors": 0,
                                 "actions": {}, "first": None, "last": None})
        p["calls"] += 1
        if not e.get("read_only"):
            p["writes"] += 1
        if e.get("error_code"):
            p["errors"] += 1
        action = f"{(e.get('event_source') or '').split('.')[0]}:{e.get('event_name')}"
        p["actions"][action] = p["actions"].get(action, 0) + 1
        if e.get("access_key_id"):
            p["access_key_ids"].add(e["access_key_id"])
        t = e.get("event_time")
        if t is not None:
            p["first"] = t if p["first"] is None else min(p["first"], t)
            p["last"] = t if p["last"] is None else max(p["last"], t)
    principals = []
    for p in by.values():
        keys = sorted(p["access_key_ids"])
        p["access_key_ids"] = keys
        p["allowed"] = p["principal"] in allow or any(k in allow for k in keys)
        p["actions"] = dict(sorted(p["actions"].items(), key=lambda kv: (-kv[1], kv[0])))
        principals.append(p)
    principals.sort(key=lambda p: (p["allowed"], -p["calls"], p["principal"]))
    return {"total": sum(p["calls"] for p in principals), "principals": principals,
            "flagged": [p["principal"] for p in principals if not p["allowed"]]}


def activity_line(principal):
    """One line of a review's principal: 'name: 12 calls (3 writes, 1 error), FLAGGED; top actions'."""
    p = principal
    top = ", ".join(f"{a} x{n}" for a, n in list(p.get("actions", {}).items())[:5])
    flag = "allowed" if p.get("allowed") else "FLAGGED"
    return f"{p['principal']}: {p['calls']} calls ({p['writes']} writes, {p['errors']} errors), {flag}; {top}"


def _template_secrets(spec):
    names = set()
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in c.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref:
                names.add(ref)
        for src in c.get("envFrom") or []:
            ref = (src.get("secretRef") or {}).get("name")
            if ref:
                names.add(ref)
    for vol in spec.get("volumes") or []:
        ref = (vol.get("secret") or {}).get("secretName")
        if ref:
            names.add(ref)
        for source in ((vol.get("projected") or {}).get("sources") or []):
            ref = (source.get("secret") or {}).get("name")
            if ref:
                names.add(ref)
    return names


def secret_users(workloads, secret_names):
    wanted = set(secret_names or [])
    out = []
    for w in workloads or []:
        if w.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = ((w.get("spec") or {}).get("template") or {}).get("spec") or {}
        used = sorted(_template_secrets(spec) & wanted)
        if used:
            meta = w.get("metadata") or {}
            out.append({"kind": w["kind"], "name": meta.get("name"), "namespace": meta.get("namespace"),
                        "secrets": used})
    return sorted(out, key=lambda w: (w["namespace"] or "", w["kind"], w["name"] or ""))


def redact_secret(secret):
    out = dict(secret or {})
    for field, encoded in (("data", True), ("stringData", False)):
        if isinstance(out.get(field), dict):
            redacted = {}
            for k, v in out[field].items():
                raw = base64.b64decode(v or "") if encoded else str(v).encode()
                redacted[k] = "sha256:" + hashlib.sha256(raw).hexdigest()
            out[field] = redacted
    meta = dict(out.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)  # may hold the values
    if "annotations" in meta:
        meta["annotations"] = annotations
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


class FilterModule:
    def filters(self):
        return {"activity_review": activity_review, "activity_line": activity_line, "secret_users": secret_users,
                "redact_secret": redact_secret}

# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import re

LEVELS = ("none", "reboot", "nodegroup_update", "rebuild")
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
COMPONENTSTATUSES_NOTE = ("kubectl get componentstatuses (DR plan) is deprecated since Kubernetes 1.19: "
                          "the control plane is judged from /readyz?verbose and /livez")


class DiagnosisError(ValueError):
    pass


def provider_instance(provider_id):
    """aws:///us-east-1a/i-0abc -> ('us-east-1a', 'i-0abc'); anything else -> ('', '')."""
    m = re.match(r"^aws:///([^/]*)/(i-[0-9a-zA-Z]+)$", provider_id or "")
    return (m.group(1), m.group(2)) if m else ("", "")


def _conditions(obj):
    return {c.get("type"): c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)}


def node_problem(node):
    """Why a node needs action, or '' when it is Ready without pressure."""
    conds = _conditions(node)
    ready = conds.get("Ready")
    if ready is None:
        return "no Ready condition reported"
    if ready.get("status") != "True":
        return "Ready={} ({}: {})".format(ready.get("status"), ready.get("reason", ""), ready.get("message", ""))
    bad = [t for t in PRESSURE if (conds.get(t) or {}).get("status") == "True"]
    if bad:
        return ", ".join(bad) + " true"
    return ""


def _probe_ok(probe):
    try:
        return 200 <= int((probe or {}).get("status", 0)) < 300
    except (TypeError, ValueError):
        return False


def failed_checks(content):
    """Names of the checks /readyz?verbose marks with [-]."""
    return [m.group(1) for m in re.finditer(r"^\[-\]([^\s]+)", content or "", re.M)]


def pod_problem(pod):
    """(phase, reason, message) when a pod is not Running and Ready, else None. Completed pods are fine."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Unknown")
    if phase == "Succeeded":
        return None
    ready = (_conditions(pod).get("Ready") or {}).get("status") == "True"
    if phase == "Running" and ready:
        return None
    reason, message = "", ""
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                reason = state[key].get("reason", reason) or reason
                message = state[key].get("message", message) or message
        if reason:
            break
        if not cs.get("ready"):
            reason = reason or "NotReady"
            message = message or "container {} running but its readiness probe fails".format(cs.get("name"))
    if not reason:
        cond = _conditions(pod).get("Ready") or {}
        reason = cond.get("reason") or status.get("reason") or phase
        message = cond.get("message") or status.get("message") or ""
    return phase, reason, message


def cluster_diagnosis(nodes, pods=None, readyz=None, livez=None, cluster_status="", nodegroup_status="",
                      attempted=None, api_error=""):
    if not isinstance(nodes, list):
        raise DiagnosisError("cluster_diagnosis expects the list of nodes")
    attempted = list(attempted or [])
    unknown = [a for a in attempted if a not in LEVELS]
    if unknown:
        raise DiagnosisError("unknown attempted level(s) {}; known: {}".format(unknown, ", ".join(LEVELS)))
    reasons = [COMPONENTSTATUSES_NOTE]
    readyz = readyz or {}
    livez = livez or {}

    checks = failed_checks(readyz.get("content"))
    cp_ready = _probe_ok(readyz)
    lz_ok = _probe_ok(livez)
    control_plane = {"ready": cp_ready, "livez": lz_ok, "failed_checks": checks,
                     "readyz_status": readyz.get("status"), "livez_status": livez.get("status")}

    not_ready = []
    ready_names = set()
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        why = node_problem(node)
        if not why:
            ready_names.add(name)
            continue
        pid = (node.get("spec") or {}).get("providerID", "")
        az, iid = provider_instance(pid)
        not_ready.append({"name": name, "instance_id": iid, "availability_zone": az, "provider_id": pid,
                          "reason": why})

    failing = []
    for pod in pods or []:
        problem = pod_problem(pod)
        if problem is None:
            continue
        node = (pod.get("spec") or {}).get("nodeName", "")
        failing.append({"name": (pod.get("metadata") or {}).get("name", ""), "node": node, "phase": problem[0],
                        "reason": problem[1], "message": problem[2], "node_ready": node in ready_names})

    def result(level, kind):
        return {"level": level, "kind": kind, "reasons": reasons, "not_ready_nodes": not_ready,
                "failing_pods": failing, "control_plane": control_plane, "attempted": attempted,
                "cluster_status": cluster_status, "nodegroup_status": nodegroup_status}

    if api_error:
        cp_ready = control_plane["ready"] = False
    if not cp_ready or not lz_ok or (cluster_status and cluster_status != "ACTIVE"):
        if api_error:
            reasons.append("the API server does not answer: {}".format(api_error))
        elif not cp_ready:
            reasons.append("control plane not ready: /readyz answered {}{}".format(
                readyz.get("status"), " (failing: {})".format(", ".join(checks)) if checks else ""))
        if not lz_ok:
            reasons.append("control plane not live: /livez answered {}".format(livez.get("status")))
        if cluster_status and cluster_status != "ACTIVE":
            reasons.append("EKS reports the cluster {}".format(cluster_status))
        reasons.append("a failing control plane is not fixed by rebooting nodes: rebuild the cluster")
        return result("rebuild", "control_plane")

    if not_ready:
        names = ", ".join("{} ({})".format(n["name"], n["reason"]) for n in not_ready)
        unmapped = [n["name"] for n in not_ready if not n["instance_id"]]
        if "nodegroup_update" in attempted:
            reasons.append("nodes still not Ready after the node group update: {}; rebuild the cluster".format(names))
            return result("rebuild", "node")
        if "reboot" in attempted:
            reasons.append("nodes still not Ready after a reboot: {}; update the node group with force".format(names))
            return result("nodegroup_update", "node")
        if unmapped:
            reasons.append("nodes without an EC2 providerID cannot be rebooted ({}): update the node group".format(
                ", ".join(unmapped)))
            return result("nodegroup_update", "node")
        reasons.append("nodes not Ready: {}; reboot them".format(names))
        if nodegroup_status and nodegroup_status != "ACTIVE":
            reasons.append("EKS reports the node group {}".format(nodegroup_status))
        return result("reboot", "node")

    if failing:
        reasons.append("pods failing on Ready nodes ({}): an application problem, no node action helps; "
                       "read the pods' logs and the last deploy".format(
                           ", ".join("{} {}".format(p["name"], p["reason"]) for p in failing)))
        return result("none", "application")

    reasons.append("control plane ready, every node Ready, every pod Running and Ready")
    return result("none", "healthy")


def level_above(level, other):
    """True when `other` is a higher level than `level`."""
    return LEVELS.index(other) > LEVELS.index(level)


def cluster_action_entry(action):
    """An action the recovery took, as an incident timeline entry (what, result, detail)."""
    detail = "{} s".format(action.get("seconds", "?"))
    if action.get("backup"):
        detail += ", backup " + action["backup"]
    return {"what": "action " + action.get("level", "?"), "result": "done", "detail": detail}


def cluster_node_entry(node):
    """A node's recovery, as an incident timeline entry."""
    iid = node.get("instance_id")
    what = "node {}{}".format(node.get("name", "?"), " ({})".format(iid) if iid else "")
    return {"what": what, "result": "Ready" if node.get("ready") else "NotReady",
            "detail": "{}: {} s".format(node.get("action", "?"), node.get("seconds", "?"))}


class FilterModule:
    def filters(self):
        return {"cluster_diagnosis": cluster_diagnosis, "cluster_action_entry": cluster_action_entry,
                "cluster_node_entry": cluster_node_entry}

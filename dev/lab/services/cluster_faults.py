"""Cluster failures of DR plan section 3 for the lab: nodes that recover on an EC2 reboot or an EKS node group
update, a control plane whose /readyz fails until the cluster is rebuilt (deleted and created in EKS).

The AWS server (aws_server.py) records what was done to the instances and clusters in
<lab-dir>/k8s/aws_events.jsonl (`record`); the Kubernetes emulator asks this module, on every request and
controller pass, whether a node is down (`node_down`), whether a control plane is failing (`readyz`) and whether
a cluster was deleted in EKS since it was made (`deleted_since`). Faults (a file in <lab-dir>/faults/, JSON
options, see docs/lab/k8s.md):

  k8s.node_failure   {"nodes": [...], "recovers_on": "reboot" | "nodegroup_update" | "never", "clusters": [...]}
                     the nodes are NotReady (Ready=Unknown, NodeStatusUnknown) until their EC2 instance
                     (spec.providerID) is rebooted (recovers_on=reboot, the default) or their node group
                     (label eks.amazonaws.com/nodegroup) is updated (recovers_on=reboot or nodegroup_update).
                     A recovery counts only when it happened after the fault file was written.
  k8s.control_plane  {"clusters": [...], "checks": ["etcd"], "livez": false}
                     /readyz (and /livez with "livez": true) answer 500 with the checks marked [-], until the
                     cluster is created again in EKS after the fault was written. The API keeps answering
                     (a degraded control plane: reads work, so a backup can still be taken).

Any node whose instance is rebooting is NotReady for REBOOT_SECONDS after the RebootInstances (or StartInstances:
amazon.aws.ec2_instance state=rebooted is a stop then a start) call, fault or not;
a node group update takes NODEGROUP_SECONDS.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from _common import fault

EVENTS = Path("k8s") / "aws_events.jsonl"
REBOOT_SECONDS = 2.0
NODEGROUP_SECONDS = 3.0
NODE_FAULT = "k8s.node_failure"
CONTROL_PLANE_FAULT = "k8s.control_plane"
READYZ_CHECKS = ("ping", "log", "etcd", "etcd-readiness", "informer-sync",
                 "poststarthook/start-apiserver-admission-initializer",
                 "poststarthook/generic-apiserver-start-informers",
                 "poststarthook/start-apiextensions-controllers", "shutdown")

_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, int], list[dict]]] = {}


# ------------------------------------------------------------------------------------------- events (aws side)
def record(lab_dir: Path | str, kind: str, **fields: object) -> None:
    """Append one event (kind: reboot, nodegroup_update, cluster_deleted, cluster_created)."""
    path = Path(lab_dir) / EVENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"kind": kind, "at": time.time(), **fields}) + "\n"
    with _lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def events(lab_dir: Path | str) -> list[dict]:
    path = Path(lab_dir) / EVENTS
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    key = str(path)
    sig = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(key)
    if cached and cached[0] == sig:
        return cached[1]
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    _cache[key] = (sig, out)
    return out


def _fault(lab_dir: Path | str, name: str, cluster: str) -> tuple[dict, float] | None:
    opts = fault(lab_dir, name)
    if opts is None:
        return None
    if opts.get("clusters") and cluster not in opts["clusters"]:
        return None
    try:
        since = os.stat(Path(lab_dir) / "faults" / name).st_mtime
    except OSError:
        since = 0.0
    return opts, since


def instance_of(node: dict) -> str:
    return ((node.get("spec") or {}).get("providerID") or "").rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------------- nodes
def node_down(lab_dir: Path | str, cluster: str, node: dict, now: float | None = None) -> str | None:
    """Why the node is NotReady now (None: no reason from this module)."""
    now = time.time() if now is None else now
    iid = instance_of(node)
    group = ((node.get("metadata") or {}).get("labels") or {}).get("eks.amazonaws.com/nodegroup", "")
    evs = events(lab_dir)
    reboots = [e["at"] for e in evs if e.get("kind") == "reboot" and iid and iid in (e.get("instances") or [])]
    updates = [e["at"] for e in evs if e.get("kind") == "nodegroup_update" and e.get("cluster") == cluster
               and e.get("nodegroup") == group]
    if any(at <= now < at + REBOOT_SECONDS for at in reboots):
        return "rebooting"
    if any(at <= now < at + NODEGROUP_SECONDS for at in updates):
        return "node group update in progress"
    found = _fault(lab_dir, NODE_FAULT, cluster)
    if found is None:
        return None
    opts, since = found
    names = opts.get("nodes")
    if names and (node.get("metadata") or {}).get("name") not in names:
        return None
    recovers_on = opts.get("recovers_on", "reboot")
    if recovers_on == "reboot" and any(at > since for at in reboots):
        return None
    if recovers_on in ("reboot", "nodegroup_update") and any(at > since for at in updates):
        return None
    return "kubelet stopped posting node status (fault k8s.node_failure)"


# ------------------------------------------------------------------------------------------- control plane
def deleted_since(lab_dir: Path | str, cluster: str, born: float) -> bool:
    """True when EKS deleted the cluster after the emulator made its store (a rebuild starts empty)."""
    return any(e.get("kind") == "cluster_deleted" and e.get("cluster") == cluster and e["at"] > born
               for e in events(lab_dir))


def control_plane_failing(lab_dir: Path | str, cluster: str) -> dict | None:
    found = _fault(lab_dir, CONTROL_PLANE_FAULT, cluster)
    if found is None:
        return None
    opts, since = found
    if any(e.get("kind") == "cluster_created" and e.get("cluster") == cluster and e["at"] > since
           for e in events(lab_dir)):
        return None
    return opts


def health(lab_dir: Path | str, cluster: str, path: str, verbose: bool) -> tuple[int, str]:
    """Answer of /readyz, /livez or /healthz for the cluster: (status, text)."""
    opts = control_plane_failing(lab_dir, cluster)
    failing = set((opts or {}).get("checks") or ["etcd"]) if opts is not None else set()
    if path == "livez" and not (opts or {}).get("livez", False):
        failing = set()
    if not failing:
        if not verbose:
            return 200, "ok"
        return 200, "".join(f"[+]{c} ok\n" for c in READYZ_CHECKS) + f"{path} check passed\n"
    lines = "".join(f"[-]{c} failed: reason withheld\n" if c in failing else f"[+]{c} ok\n" for c in READYZ_CHECKS)
    return 500, lines + f"{path} check failed\n"


# ------------------------------------------------------------------------------------------- aws hook
def _observe(lab_dir: Path | str, info: dict, method: str, path: str, body: bytes | None) -> None:
    """Record the AWS calls that change nodes and clusters (called once the call answered 2xx)."""
    import re
    from urllib.parse import parse_qs

    # RebootInstances, or StartInstances (amazon.aws.ec2_instance state=rebooted stops then starts)
    if info.get("service") == "ec2" and info.get("action") in ("RebootInstances", "StartInstances") and body:
        form = parse_qs(body.decode("utf-8", "replace"))
        ids = [v[0] for k, v in sorted(form.items()) if k.startswith("InstanceId.")]
        if ids:
            record(lab_dir, "reboot", instances=ids, region=info.get("region"))
    elif info.get("service") == "eks":
        if method == "POST" and (m := re.match(r"^/clusters/([^/]+)/node-groups/([^/]+)/update-version/?$", path)):
            record(lab_dir, "nodegroup_update", cluster=m.group(1), nodegroup=m.group(2), region=info.get("region"))
        elif method == "DELETE" and (m := re.match(r"^/clusters/([^/]+)/?$", path)):
            record(lab_dir, "cluster_deleted", cluster=m.group(1), region=info.get("region"))
        elif method == "POST" and re.match(r"^/clusters/?$", path) and body:
            try:
                name = json.loads(body).get("name")
            except ValueError:
                name = None
            if name:
                record(lab_dir, "cluster_created", cluster=name, region=info.get("region"))


def observing(lab_dir: Path | str, info: dict, environ: dict, body: bytes | None, start_response):
    """Wrap a WSGI start_response so that a 2xx answer to a call above is recorded as an event."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")

    def wrapped(status: str, headers: list, exc_info=None):
        try:
            if status[:1] == "2":
                _observe(lab_dir, info, method, path, body)
        except Exception:  # noqa: BLE001 - the lab's bookkeeping must never break an AWS answer
            logging.getLogger("aws").exception("cluster_faults: could not record %s %s", method, path)
        return start_response(status, headers, exc_info)

    return wrapped


# ------------------------------------------------------------------------------------------- node identity
def node_identity(lab_dir: Path | str, node: dict) -> dict[str, str]:
    """nodeInfo's machineID/systemUUID (from the instance) and bootID (changes with every reboot of the instance)."""
    import hashlib
    import uuid

    iid = instance_of(node) or (node.get("metadata") or {}).get("name", "")
    boots = sum(1 for e in events(lab_dir) if e.get("kind") == "reboot" and iid in (e.get("instances") or []))
    machine = hashlib.sha256(iid.encode()).hexdigest()[:32]
    return {"machineID": machine, "systemUUID": str(uuid.UUID(machine)).upper(),
            "bootID": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{iid}/{boots}"))}

"""One emulated Kubernetes cluster: the object store (kmock's ObjectsArray), API semantics, controllers.

The store is kmock's `ObjectsArray` of versioned `Object`s (every write appends a version, a
delete is a soft delete), keyed by (kmock.resource, namespace, name). On top of it this module
adds what a real API server does and kmock does not: server-set metadata, defaults, generation,
resourceVersion, Secret stringData, conflicts, selectors, cascading deletes, watch events, and
the few controllers the lab needs (Deployment -> ReplicaSet -> Pods, StatefulSet -> Pods, Jobs,
Node conditions, owner garbage collection).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import gzip
import hashlib
import importlib.resources
import json
import pickle
import random
import string
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cluster_faults
import kmock
from _common import fault
from k8s_util import (
    apply_patch,
    fold_string_data,
    match_fields,
    match_labels,
    now_iso,
    parse_field_selector,
    parse_label_selector,
    strip_directives,
)
from kmock._internal import loading

ROLLOUT_DELAY = 1.0  # seconds between a spec change and the workload becoming available
NAMESPACE_GRACE = 1.0  # seconds a deleted namespace stays Terminating before its contents go
HIDDEN_GROUPS = {"metrics.k8s.io", "gateway.networking.k8s.io"}  # not on a stock EKS cluster


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details, "code": self.code}


# ============================================================================ discovery


@dataclass(frozen=True)
class ResInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Discovery:
    """API discovery from kmock's bundled resource catalogue (a K3s dump of the builtin API)."""

    def __init__(self) -> None:
        raw = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
        docs = json.loads(gzip.decompress(raw))
        self.docs: dict[str, dict] = {}
        self.resources: dict[tuple[str, str, str], ResInfo] = {}
        self.group_versions: dict[str, list[str]] = collections.OrderedDict()
        for doc in docs:
            gv = doc["groupVersion"]
            group, version = gv.rsplit("/", 1) if "/" in gv else ("", gv)
            if group in HIDDEN_GROUPS:
                continue
            listing = dict(doc, apiVersion="v1", kind="APIResourceList")
            self.docs[gv] = listing
            if group:
                self.group_versions.setdefault(group, []).append(version)
            for res, info in loading.parse_group_version(listing).items():
                self.resources[(group, version, res.plural)] = ResInfo(
                    group, version, res.plural, info.kind or res.plural, bool(info.namespaced),
                    frozenset(info.subresources))

    def lookup(self, group: str, version: str, plural: str) -> ResInfo | None:
        return self.resources.get((group, version, plural))

    def of(self, group: str, plural: str) -> ResInfo:
        """The preferred-version info of a resource (for the lab's own controllers)."""
        versions = self.group_versions.get(group, ["v1"]) if group else ["v1"]
        for v in versions:
            if (group, v, plural) in self.resources:
                return self.resources[(group, v, plural)]
        raise KeyError(f"{group}/{plural}")

    def storage_key(self, info: ResInfo) -> Any:
        """All versions of one resource share one storage key (the preferred version's)."""
        try:
            pref = self.of(info.group, info.plural)
        except KeyError:
            pref = info
        return kmock.resource(pref.group, pref.version, pref.plural)

    def api_group_list(self) -> dict:
        groups = []
        for group, versions in self.group_versions.items():
            groups.append(self.api_group(group, versions))
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str, versions: list[str] | None = None) -> dict:
        versions = versions or self.group_versions.get(group, [])
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs,
                "preferredVersion": vs[0] if vs else {}}


# ============================================================================ cluster


def _copy(obj: Any) -> Any:
    """A deep copy of a stored object (JSON data: dicts, lists, strings, numbers). Through pickle, about twice as fast
    as copy.deepcopy here, and the controllers copy every object they touch on every pass."""
    try:
        return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - bytes made on the line
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(obj)


def _rand(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _hash(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass(eq=False)
class Watcher:
    storage: Any
    namespace: str | None
    labels: list
    fields: list
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def wants(self, storage: Any, obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        return (storage == self.storage
                and (self.namespace is None or meta.get("namespace") == self.namespace)
                and match_labels(meta.get("labels"), self.labels)
                and match_fields(obj, self.fields))


class Cluster:
    def __init__(self, name: str, discovery: Discovery, lab_dir: Path) -> None:
        self.name = name
        self.disc = discovery
        self.lab_dir = lab_dir
        self.objects = kmock.ObjectsArray()
        self.rv = 1
        self.events: collections.deque = collections.deque(maxlen=5000)  # (rv, storage, type, obj)
        self.watchers: set[Watcher] = set()
        self.changed_at: dict[tuple, float] = {}
        self.ip_counter = 10
        self.kubelet: Any = None  # k8s_kubelet.Kubelet when the emulator runs pods of known images
        self.terminating: dict[str, float] = {}  # namespace -> when its deletion was asked

    # ------------------------------------------------------------------ low-level store

    def _key(self, info: ResInfo, ns: str | None, name: str) -> tuple:
        return (self.disc.storage_key(info), ns if info.namespaced else None, name)

    def _load(self, key: tuple) -> dict | None:
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else _copy(obj.raw)

    def _emit(self, storage: Any, etype: str, obj: dict) -> None:
        self.events.append((self.rv, storage, etype, obj))
        for w in list(self.watchers):
            if w.wants(storage, obj):
                w.queue.put_nowait({"type": etype, "object": _copy(obj)})

    def _store(self, key: tuple, obj: dict, etype: str) -> dict:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        obj = _copy(obj)
        if key in self.objects:
            self.objects[key].create(obj)  # appends a version (kmock keeps the history)
        else:
            self.objects[key] = obj
        self._emit(key[0], etype, obj)
        return _copy(obj)

    def _remove(self, key: tuple) -> dict | None:
        obj = self._load(key)
        if obj is None:
            return None
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key].delete()
        self._emit(key[0], "DELETED", obj)
        self.changed_at.pop(key, None)
        if self.kubelet is not None and obj.get("kind") == "Pod":
            self.kubelet.remove(self.name, obj["metadata"].get("uid"))
        return obj

    def _items(self, info: ResInfo, ns: str | None = None, where: Any = None) -> list[tuple[tuple, dict]]:
        """Copies of the stored objects of `info` (in `ns`), by namespace and name. `where(key, raw)` filters on the
        stored object before it is copied (the controllers' passes read many objects and keep few)."""
        storage = self.disc.storage_key(info)
        out = []
        for key, obj in self.objects.items():
            if key[0] == storage and not obj.deleted and (ns is None or key[1] == ns):
                raw = obj.raw
                if where is None or where(key, raw):
                    out.append((key, _copy(raw)))
        out.sort(key=lambda kv: (kv[0][1] or "", kv[0][2]))
        return out

    def _peek(self, key: tuple) -> dict | None:
        """The stored object itself, not a copy: only to read, never to change or hand out."""
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.raw

    # ------------------------------------------------------------------ API operations

    def get(self, info: ResInfo, ns: str | None, name: str) -> dict:
        obj = self._load(self._key(info, ns, name))
        if obj is None:
            raise self.not_found(info, name)
        return self._present(info, obj)

    def list(self, info: ResInfo, ns: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        return [self._present(info, o) for _, o in self._items(info, ns if info.namespaced else None)
                if match_labels(o["metadata"].get("labels"), labels) and match_fields(o, fields)]

    def create(self, info: ResInfo, ns: str | None, body: dict, *, dry_run: bool = False) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request is not an object")
        body = _copy(body)
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _rand()
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{info.kind} is invalid: metadata.name: Required value",
                           {"kind": info.kind, "group": info.group})
        if info.namespaced:
            body_ns = meta.get("namespace")
            if ns and body_ns and ns != body_ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match "
                                                  "the namespace sent on the request")
            ns = ns or body_ns or "default"
            self._require_namespace(ns)
            if ns in self.terminating:
                raise ApiError(403, "Forbidden", f'{info.plural} "{name}" is forbidden: unable to create new '
                               f"content in namespace {ns} because it is being terminated",
                               {"name": name, "group": info.group, "kind": info.plural})
        key = self._key(info, ns, name)
        if self._load(key) is not None:
            raise ApiError(409, "AlreadyExists", f'{info.qualified} "{name}" already exists',
                           {"name": name, "group": info.group, "kind": info.plural})
        obj = self._admit(info, ns, body, None)
        if dry_run:
            return self._present(info, obj)
        stored = self._store(key, obj, "ADDED")
        self.changed_at[key] = time.monotonic()
        self._after_write(info, key, stored)
        return self._present(info, stored)

    def replace(self, info: ResInfo, ns: str | None, name: str, body: dict, *, dry_run: bool = False,
                only_status: bool = False) -> dict:
        key = self._key(info, ns, name)
        old = self._load(key)
        if old is None:
            raise self.not_found(info, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"].get("resourceVersion"):
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {info.qualified} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": info.group, "kind": info.plural})
        body = _copy(body)
        if only_status:
            new = _copy(old)
            new["status"] = body.get("status", {})
        else:
            new = body
            new.setdefault("metadata", {})["name"] = name
        return self._update(info, ns, key, old, new, dry_run=dry_run, status_write=only_status)

    def patch(self, info: ResInfo, ns: str | None, name: str, patch: Any, content_type: str, *,
              dry_run: bool = False, only_status: bool = False) -> tuple[dict, bool]:
        key = self._key(info, ns, name)
        old = self._load(key)
        is_apply = "apply-patch" in (content_type or "")
        if old is None:
            if is_apply and isinstance(patch, dict):
                body = _copy(patch)
                body.setdefault("metadata", {})["name"] = name
                return self.create(info, ns, body, dry_run=dry_run), True
            raise self.not_found(info, name)
        try:
            patched = apply_patch(old, patch, content_type)
        except Exception as e:  # jsonpatch conflicts, bad documents
            raise ApiError(422, "Invalid", f"the patch could not be applied: {e}") from e
        if only_status:
            new = _copy(old)
            new["status"] = patched.get("status", {})
        else:
            new = patched
        return self._update(info, ns, key, old, new, dry_run=dry_run, status_write=only_status), False

    def delete(self, info: ResInfo, ns: str | None, name: str, *, dry_run: bool = False,
               propagation: str | None = None) -> dict:
        key = self._key(info, ns, name)
        obj = self._load(key)
        if obj is None:
            raise self.not_found(info, name)
        if dry_run:
            return self._present(info, obj)
        if info.kind == "Namespace":
            return self._present(info, self._terminate_namespace(key, obj))
        removed = self._remove(key)
        if propagation != "Orphan":
            self.collect_garbage()
        return self._present(info, removed or obj)

    def delete_collection(self, info: ResInfo, ns: str | None, label_selector: str | None,
                          field_selector: str | None, *, dry_run: bool = False) -> list[dict]:
        gone = []
        for obj in self.list(info, ns, label_selector, field_selector):
            meta = obj["metadata"]
            gone.append(self.delete(info, meta.get("namespace"), meta["name"], dry_run=dry_run))
        return gone

    def not_found(self, info: ResInfo, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{info.qualified} "{name}" not found',
                        {"name": name, "group": info.group, "kind": info.plural})

    # ------------------------------------------------------------------ helpers of the operations

    def _present(self, info: ResInfo, obj: dict) -> dict:
        obj = _copy(obj)
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        return obj

    def _require_namespace(self, ns: str) -> None:
        if self._load(self._key(self.disc.of("", "namespaces"), None, ns)) is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})

    def _update(self, info: ResInfo, ns: str | None, key: tuple, old: dict, new: dict, *, dry_run: bool,
                status_write: bool = False) -> dict:
        obj = self._admit(info, ns, new, old, status_write)
        if dry_run:
            return self._present(info, obj)
        if obj == old:
            return self._present(info, old)  # no-op writes do not bump resourceVersion
        if obj["metadata"].get("generation") != old["metadata"].get("generation"):
            self.changed_at[key] = time.monotonic()
        stored = self._store(key, obj, "MODIFIED")
        self._after_write(info, key, stored)
        return self._present(info, stored)

    def _admit(self, info: ResInfo, ns: str | None, obj: dict, old: dict | None, status_write: bool = False) -> dict:
        """Server-side fields and defaults, like the API server's registry strategies."""
        obj = strip_directives(_copy(obj))
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        meta = obj.setdefault("metadata", {})
        for k in ("managedFields", "selfLink"):
            meta.pop(k, None)
        if info.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if info.kind == "Secret":
            fold_string_data(obj)
            obj.setdefault("type", "Opaque")
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            meta["generation"] = 1
            self._defaults(info, obj)
        else:
            om = old["metadata"]
            meta["uid"] = om.get("uid")
            meta["creationTimestamp"] = om.get("creationTimestamp")
            meta["resourceVersion"] = om.get("resourceVersion")
            self._defaults(info, obj)
            gen = om.get("generation", 1)
            meta["generation"] = gen + 1 if _spec_part(obj) != _spec_part(old) else gen
            if "status" in info.subresources and "status" in old and not status_write:
                # the main resource cannot change status, only /status can
                obj["status"] = old["status"]
        for k in ("labels", "annotations"):
            if meta.get(k) is None:
                meta.pop(k, None)
        return obj

    def _defaults(self, info: ResInfo, obj: dict) -> None:
        spec = obj.get("spec")
        kind = info.kind
        if kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif kind in ("Deployment", "StatefulSet", "ReplicaSet") and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            if kind == "Deployment":
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault("strategy", {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            if kind == "StatefulSet":
                spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
                spec.setdefault("podManagementPolicy", "OrderedReady")
        elif kind == "Service" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") is None:
                spec["clusterIP"] = f"172.20.{random.randint(0, 254)}.{random.randint(1, 254)}"
        elif kind == "Pod" and isinstance(spec, dict):
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("dnsPolicy", "ClusterFirst")
        elif kind == "Node":
            obj.setdefault("spec", {})
        if kind in ("Deployment", "StatefulSet") and obj.get("status") is None:
            obj["status"] = {}

    def _after_write(self, info: ResInfo, key: tuple, obj: dict) -> None:
        if info.kind == "Pod" and not (obj.get("status") or {}).get("phase"):
            self._sync_pod(key, obj, ready=True)
        if info.kind == "Node" and not (obj.get("status") or {}).get("conditions"):
            self._node_status(key, obj, ready=True)

    def _terminate_namespace(self, key: tuple, obj: dict) -> dict:
        """Namespace deletion as on a real cluster: phase Terminating now, the contents removed by the
        namespace controller (after NAMESPACE_GRACE seconds), then the namespace itself."""
        name = key[2]
        if name in self.terminating:
            return obj
        self.terminating[name] = time.monotonic()
        obj["metadata"]["deletionTimestamp"] = now_iso()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        obj["status"]["conditions"] = [
            {"type": "NamespaceDeletionContentFailure", "status": "False", "reason": "ContentDeleted",
             "message": "All content successfully deleted, may be waiting on finalization",
             "lastTransitionTime": now_iso()}]
        return self._store(key, obj, "MODIFIED")

    def _finish_namespaces(self) -> None:
        now = time.monotonic()
        ns_info = self.info("", "namespaces")
        for name, since in list(self.terminating.items()):
            if now - since < NAMESPACE_GRACE:
                continue
            for key in list(self.objects.keys()):
                if key[1] == name and not self.objects[key].deleted:
                    self._remove(key)
            self._remove(self._key(ns_info, None, name))
            del self.terminating[name]

    # ------------------------------------------------------------------ watch

    def subscribe(self, info: ResInfo, ns: str | None, label_selector: str | None,
                  field_selector: str | None) -> Watcher:
        w = Watcher(self.disc.storage_key(info), ns if info.namespaced else None,
                    parse_label_selector(label_selector), parse_field_selector(field_selector))
        self.watchers.add(w)
        return w

    def events_since(self, w: Watcher, rv: int) -> list[dict]:
        return [{"type": t, "object": _copy(o)} for (r, s, t, o) in list(self.events)
                if r > rv and w.wants(s, o)]

    # ============================================================================ controllers

    def info(self, group: str, plural: str) -> ResInfo:
        return self.disc.of(group, plural)

    def _fault(self, name: str) -> dict | None:
        opts = fault(self.lab_dir, name)
        if opts is None:
            return None
        clusters = opts.get("clusters")
        if clusters and self.name not in clusters:
            return None
        return opts

    def _stuck(self, obj: dict) -> bool:
        """Fault k8s.rollout_stuck: a rollout of a named workload that is pending (a generation
        not yet observed) or already stuck stays unavailable; workloads that are rolled out keep serving."""
        opts = self._fault("k8s.rollout_stuck")
        if opts is None:
            return False
        names = opts.get("deployments") or opts.get("names")
        if names and obj["metadata"]["name"] not in names:
            return False
        status = obj.get("status") or {}
        pending = status.get("observedGeneration") != obj["metadata"].get("generation")
        unavailable = (status.get("readyReplicas") or 0) < ((obj.get("spec") or {}).get("replicas", 1) or 0)
        return pending or unavailable

    def reconcile(self, force: bool = False) -> None:
        """One pass of every controller (called every few hundred ms and before serving)."""
        self.sync_nodes()
        now = time.monotonic()
        for kind_plural, fn in (("deployments", self._reconcile_deployment),
                                ("statefulsets", self._reconcile_statefulset),
                                ("daemonsets", self._reconcile_daemonset),
                                ("jobs", self._reconcile_job)):
            info = self.info("apps" if kind_plural != "jobs" else "batch", kind_plural)
            for key, obj in self._items(info):
                if force or now - self.changed_at.get(key, 0) >= ROLLOUT_DELAY:
                    fn(info, key, obj)
        rs_info = self.info("apps", "replicasets")
        for key, obj in self._items(rs_info):
            if not self._owner_uid(obj, "Deployment"):
                self._reconcile_replicaset(rs_info, key, obj, ready=True)
        if self.kubelet is not None:  # pods created directly; the others were synced by their controller
            pinfo = self.info("", "pods")
            for key, pod in self._items(pinfo, where=lambda _k, raw: not self._owner_uid(raw) and
                                        self.kubelet.manages(raw)):
                self._sync_pod(key, pod, ready=True)
            storage = self.disc.storage_key(pinfo)
            self.kubelet.retain(self.name, {obj.raw["metadata"].get("uid") for key, obj in self.objects.items()
                                            if key[0] == storage and not obj.deleted})
        self._finish_namespaces()
        self.collect_garbage()

    # nodes --------------------------------------------------------------------

    def sync_nodes(self) -> None:
        opts = self._fault("k8s.node_notready")
        names = (opts or {}).get("nodes")
        info = self.info("", "nodes")
        storage = self.disc.storage_key(info)
        # read on the stored nodes (every request and controller pass comes here); copy only a node that changes
        for key, stored in list(self.objects.items()):
            if key[0] != storage or stored.deleted:
                continue
            obj = stored.raw
            ready = not (opts is not None and (not names or key[2] in names))
            ready = ready and cluster_faults.node_down(self.lab_dir, self.name, obj) is None  # plan section 3 faults
            cur = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                       {})
            if (cur.get("status") == "True") != ready or not cur:
                self._node_status(key, _copy(obj), ready)

    def _node_status(self, key: tuple, obj: dict, ready: bool) -> None:
        ts = now_iso()
        status = obj.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        if not conds:
            for t, reason in (("MemoryPressure", "KubeletHasSufficientMemory"),
                              ("DiskPressure", "KubeletHasNoDiskPressure"),
                              ("PIDPressure", "KubeletHasSufficientPID")):
                conds.append({"type": t, "status": "False", "reason": reason, "message": reason,
                              "lastHeartbeatTime": ts, "lastTransitionTime": ts})
        if ready:
            conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                          "message": "kubelet is posting ready status", "lastHeartbeatTime": ts,
                          "lastTransitionTime": ts})
        else:
            conds.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                          "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": ts,
                          "lastTransitionTime": ts})
        status["conditions"] = conds
        name = obj["metadata"]["name"]
        status.setdefault("addresses", [{"type": "InternalIP", "address": _node_ip(name)},
                                        {"type": "Hostname", "address": name}])
        status.setdefault("capacity", {"cpu": "2", "memory": "7934464Ki", "pods": "29"})
        status.setdefault("allocatable", {"cpu": "1930m", "memory": "7244288Ki", "pods": "29"})
        status.setdefault("nodeInfo", {"kubeletVersion": "v1.32.3-eks-473151a", "kubeProxyVersion": "v1.32.3",
                                       "containerRuntimeVersion": "containerd://1.7.11", "operatingSystem": "linux",
                                       "architecture": "amd64", "osImage": "Amazon Linux 2",
                                       "kernelVersion": "5.10.213-201.855.amzn2.x86_64"})
        status["nodeInfo"].update(cluster_faults.node_identity(self.lab_dir, obj))  # the Python client requires them
        spec = obj.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != "node.kubernetes.io/unreachable"]
        if not ready:
            taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": ts})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        self._store(key, obj, "MODIFIED")

    def _node_ready(self, name: str | None) -> bool:
        node = self._peek(self._key(self.info("", "nodes"), None, name or "")) if name else None
        if node is None:
            return True
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])

    def _pick_node(self) -> str:
        nodes = [o for _, o in self._items(self.info("", "nodes"))]
        if not nodes:
            return "ip-10-0-1-1.ec2.internal"
        counts = collections.Counter(p.get("spec", {}).get("nodeName") for _, p in self._items(self.info("", "pods")))
        ok = [n for n in nodes if not n.get("spec", {}).get("unschedulable") and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in n.get("status", {}).get("conditions", []))]
        pool = ok or nodes
        return min(pool, key=lambda n: (counts[n["metadata"]["name"]], n["metadata"]["name"]))["metadata"]["name"]

    # pods ---------------------------------------------------------------------

    def _run_pod(self, key: tuple, pod: dict, ready: bool, phase: str | None = None) -> dict:
        ts = now_iso()
        spec = pod.setdefault("spec", {})
        if not spec.get("nodeName"):
            spec["nodeName"] = self._pick_node()
        status = pod.get("status") or {}
        if not status.get("podIP"):
            self.ip_counter += 1
            status["podIP"] = f"10.0.{(self.ip_counter // 250) % 250 + 100}.{self.ip_counter % 250 + 1}"
            status["podIPs"] = [{"ip": status["podIP"]}]
        status["hostIP"] = _node_ip(spec["nodeName"])
        status.setdefault("startTime", ts)
        status["qosClass"] = "BestEffort"
        flag = "True" if ready else "False"
        if phase is None:
            phase = "Running" if ready else "Pending"
        status["phase"] = phase
        status["conditions"] = [
            {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
            {"type": "Ready", "status": flag, "lastTransitionTime": ts},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": ts},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
        ]
        cstats = []
        for c in spec.get("containers") or []:
            if phase == "Succeeded":
                state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}}
            elif ready:
                state = {"running": {"startedAt": ts}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            cstats.append({"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
                           "containerID": f"containerd://{_hash([key[1], key[2], c.get('name')], 32)}",
                           "ready": ready and phase == "Running",
                           "started": ready, "restartCount": 0, "state": state})
        status["containerStatuses"] = cstats
        pod["status"] = status
        return self._store(key, pod, "MODIFIED")

    def _sync_pod(self, key: tuple, pod: dict, ready: bool, phase: str | None = None) -> dict:
        """Bring a pod's status to what it should be: a pod of a known image runs as processes (the
        kubelet reports), any other pod is Running/Ready (or Pending while `ready` is False) at once."""
        if self.kubelet is None or phase is not None or not self.kubelet.manages(pod):
            if phase is not None or not self._pod_state_ok(pod, ready):
                return self._run_pod(key, pod, ready, phase)
            return pod
        spec = pod.setdefault("spec", {})
        if not spec.get("nodeName"):
            spec["nodeName"] = self._pick_node()
        node_ok = self._node_ready(spec["nodeName"])
        run = ready and node_ok
        why = "" if run else ("NodeNotReady" if not node_ok else "RolloutStuck")
        return self._kubelet_status(key, pod, self.kubelet.sync(self, pod, run, why))

    def _kubelet_status(self, key: tuple, pod: dict, view: dict) -> dict:
        ts = now_iso()
        spec = pod["spec"]
        old = pod.get("status") or {}
        status = _copy(old)
        if not status.get("podIP"):
            self.ip_counter += 1
            status["podIP"] = f"10.0.{(self.ip_counter // 250) % 250 + 100}.{self.ip_counter % 250 + 1}"
            status["podIPs"] = [{"ip": status["podIP"]}]
        status["hostIP"] = _node_ip(spec["nodeName"])
        status.setdefault("startTime", ts)
        status["qosClass"] = "BestEffort"
        status["phase"] = "Running" if view["running"] or old.get("phase") == "Running" else "Pending"
        ready = bool(view["containers"]) and all(c["ready"] for c in view["containers"])
        old_conds = {c.get("type"): c for c in old.get("conditions") or []}
        conds = []
        for ctype, flag in (("Initialized", True), ("Ready", ready), ("ContainersReady", ready),
                            ("PodScheduled", True)):
            value = "True" if flag else "False"
            prev = old_conds.get(ctype) or {}
            conds.append({"type": ctype, "status": value,
                          "lastTransitionTime": prev.get("lastTransitionTime") if prev.get("status") == value
                          else ts})
        status["conditions"] = conds
        images = {c.get("name"): c.get("image", "") for c in spec.get("containers") or []}
        status["containerStatuses"] = [{**c, "image": images.get(c["name"], ""), "imageID": ""}
                                       for c in view["containers"]]
        if status == old:
            return pod
        pod["status"] = status
        return self._store(key, pod, "MODIFIED")

    def _pods_owned_by(self, uid: str) -> list[tuple[tuple, dict]]:
        """Copies of the pods `uid` owns, by namespace and name. Owners are read on the stored objects and only the
        matches are copied: every controller pass calls this three times per ReplicaSet."""
        return self._items(self.info("", "pods"), where=lambda _key, raw: self._owner_uid(raw) == uid)

    @staticmethod
    def _owner_uid(obj: dict, kind: str | None = None) -> str | None:
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and (kind is None or ref.get("kind") == kind):
                return ref.get("uid")
        return None

    @staticmethod
    def _owner_ref(obj: dict) -> dict:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _new_pod(self, ns: str, name: str, template: dict, labels: dict, owner: dict, *, ready: bool,
                 phase: str | None = None) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": labels,
                            "annotations": (template.get("metadata") or {}).get("annotations") or {},
                            "ownerReferences": [self._owner_ref(owner)]},
               "spec": _copy(template.get("spec") or {})}
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        info = self.info("", "pods")
        key = self._key(info, ns, name)
        stored = self._store(key, self._admit(info, ns, pod, None), "ADDED")
        self._sync_pod(key, stored, ready, phase)

    def _pod_state_ok(self, pod: dict, ready: bool) -> bool:
        st = pod.get("status") or {}
        return st.get("phase") == ("Running" if ready else "Pending") and all(
            c.get("ready") == ready for c in st.get("containerStatuses") or [])

    # replicasets / deployments ----------------------------------------------------

    def _reconcile_replicaset(self, info: ResInfo, key: tuple, rs: dict, ready: bool) -> dict:
        rs = self._present(info, rs)
        ns, uid = key[1], rs["metadata"]["uid"]
        want = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        template = (rs.get("spec") or {}).get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pods = self._pods_owned_by(uid)
        for pkey, _ in pods[want:]:
            self._remove(pkey)
        pods = pods[:want]
        for _ in range(want - len(pods)):
            self._new_pod(ns, f"{key[2]}-{_rand()}", template, labels, rs, ready=ready)
        for pkey, pod in self._pods_owned_by(uid):
            self._sync_pod(pkey, pod, ready)
        pods = self._pods_owned_by(uid)
        n_ready = sum(1 for _, p in pods if self._pod_state_ok(p, True))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": n_ready,
                  "availableReplicas": n_ready, "observedGeneration": rs["metadata"].get("generation", 1)}
        if status != rs.get("status"):
            rs["status"] = status
            self._store(key, rs, "MODIFIED")
        return status

    def _reconcile_deployment(self, info: ResInfo, key: tuple, dep: dict) -> None:
        dep = self._present(info, dep)
        ns, name = key[1], key[2]
        spec = dep.get("spec") or {}
        want = int(spec.get("replicas", 1) or 0)
        stuck = self._stuck(dep)
        template = _copy(spec.get("template") or {})
        phash = _hash(template)
        rs_name = f"{name}-{phash}"
        rs_info = self.info("apps", "replicasets")
        rs_key = self._key(rs_info, ns, rs_name)
        tmpl_labels = dict((template.get("metadata") or {}).get("labels") or {})
        tmpl_labels["pod-template-hash"] = phash
        template.setdefault("metadata", {})["labels"] = tmpl_labels
        rs = self._load(rs_key)
        if rs is None:
            selector = _copy(spec.get("selector") or {"matchLabels": {}})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = phash
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": rs_name, "namespace": ns, "labels": tmpl_labels,
                               "annotations": {"deployment.kubernetes.io/revision": str(dep["metadata"]["generation"])},
                               "ownerReferences": [self._owner_ref(dep)]},
                  "spec": {"replicas": want, "selector": selector, "template": template}}
            rs = self._store(rs_key, self._admit(rs_info, ns, rs, None), "ADDED")
        elif rs["spec"].get("replicas") != want:
            rs["spec"]["replicas"] = want
            rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
            rs = self._store(rs_key, rs, "MODIFIED")
        dep_uid = dep["metadata"]["uid"]

        def older(okey: tuple, raw: dict) -> bool:  # the deployment's other ReplicaSets
            return okey != rs_key and self._owner_uid(raw) == dep_uid

        for okey, other in self._items(rs_info, ns, where=older):
            if other["spec"].get("replicas"):
                other["spec"]["replicas"] = 0
                self._store(okey, other, "MODIFIED")
            self._reconcile_replicaset(rs_info, okey, self._load(okey), ready=True)
        rs_status = self._reconcile_replicaset(rs_info, rs_key, self._load(rs_key), ready=not stuck)
        ts = now_iso()
        available = rs_status["availableReplicas"]
        status: dict[str, Any] = {"observedGeneration": dep["metadata"]["generation"],
                                  "replicas": rs_status["replicas"], "updatedReplicas": rs_status["replicas"],
                                  "readyReplicas": rs_status["readyReplicas"], "availableReplicas": available}
        if want - available > 0:
            status["unavailableReplicas"] = want - available
        old_conds = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        # Available as the deployment controller computes it: at least replicas - maxUnavailable answer
        min_available = want - _max_unavailable(spec, want)
        if stuck or available < min_available or available < want:
            progressing = ("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
            if available >= min_available and not stuck:
                conds = [("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                         progressing]
            else:
                conds = [("Available", "False", "MinimumReplicasUnavailable",
                          "Deployment does not have minimum availability."), progressing]
        else:
            conds = [("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                     ("Progressing", "True", "NewReplicaSetAvailable",
                      f'ReplicaSet "{rs_name}" has successfully progressed.')]
        status["conditions"] = []
        for ctype, cstatus, reason, msg in conds:
            old = old_conds.get(ctype, {})
            same = old.get("status") == cstatus and old.get("reason") == reason and old.get("message") == msg
            status["conditions"].append({"type": ctype, "status": cstatus, "reason": reason, "message": msg,
                                         "lastUpdateTime": old.get("lastUpdateTime") if same else ts,
                                         "lastTransitionTime": old.get("lastTransitionTime") if same else ts})
        if status != dep.get("status"):
            dep["status"] = status
            self._store(key, dep, "MODIFIED")

    # statefulsets -----------------------------------------------------------------

    def _reconcile_statefulset(self, info: ResInfo, key: tuple, sts: dict) -> None:
        sts = self._present(info, sts)
        ns, name = key[1], key[2]
        spec = sts.get("spec") or {}
        want = int(spec.get("replicas", 1) or 0)
        stuck = self._stuck(sts)
        template = spec.get("template") or {}
        revision = f"{name}-{_hash(template)}"
        uid = sts["metadata"]["uid"]
        pinfo = self.info("", "pods")
        for i in range(want):
            pname = f"{name}-{i}"
            pkey = self._key(pinfo, ns, pname)
            pod = self._load(pkey)
            if pod is not None and (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != revision:
                self._remove(pkey)
                pod = None
            if pod is None:
                labels = dict((template.get("metadata") or {}).get("labels") or {})
                labels.update({"controller-revision-hash": revision,
                               "statefulset.kubernetes.io/pod-name": pname,
                               "apps.kubernetes.io/pod-index": str(i)})
                tmpl = _copy(template)
                tmpl.setdefault("spec", {}).setdefault("hostname", pname)
                self._new_pod(ns, pname, tmpl, labels, sts, ready=not stuck)
            else:
                self._sync_pod(pkey, pod, not stuck)
        for pkey, _ in self._pods_owned_by(uid):
            idx = pkey[2].rsplit("-", 1)[-1]
            if not idx.isdigit() or int(idx) >= want:
                self._remove(pkey)
        pods = self._pods_owned_by(uid)
        n_ready = sum(1 for _, p in pods if self._pod_state_ok(p, True))
        status = {"observedGeneration": sts["metadata"]["generation"], "replicas": len(pods),
                  "readyReplicas": n_ready, "currentReplicas": len(pods), "updatedReplicas": len(pods),
                  "availableReplicas": n_ready, "currentRevision": revision, "updateRevision": revision,
                  "collisionCount": 0}
        if status != sts.get("status"):
            sts["status"] = status
            self._store(key, sts, "MODIFIED")

    def _reconcile_daemonset(self, info: ResInfo, key: tuple, ds: dict) -> None:
        n = len(self._items(self.info("", "nodes")))
        status = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": n,
                  "currentNumberScheduled": n, "updatedNumberScheduled": n, "numberReady": n,
                  "numberAvailable": n, "numberMisscheduled": 0}
        if status != ds.get("status"):
            ds["status"] = status
            self._store(key, ds, "MODIFIED")

    def _reconcile_job(self, info: ResInfo, key: tuple, job: dict) -> None:
        if (job.get("status") or {}).get("completionTime") or (job.get("spec") or {}).get("suspend"):
            return
        job = self._present(info, job)
        ts = now_iso()
        template = _copy((job.get("spec") or {}).get("template") or {})
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.update({"job-name": key[2], "batch.kubernetes.io/job-name": key[2],
                       "controller-uid": job["metadata"]["uid"]})
        if not self._pods_owned_by(job["metadata"]["uid"]):
            self._new_pod(key[1], f"{key[2]}-{_rand()}", template, labels, job, ready=False, phase="Succeeded")
        job["status"] = {"startTime": job.get("status", {}).get("startTime") or ts, "completionTime": ts,
                         "succeeded": 1, "ready": 0, "active": 0,
                         "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": ts,
                                         "lastTransitionTime": ts}]}
        self._store(key, job, "MODIFIED")

    # garbage collection -----------------------------------------------------------

    def collect_garbage(self) -> None:
        """Delete objects whose every owner is gone (background cascading deletion)."""
        while True:
            live = {obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted}
            orphans = []
            for key, obj in self.objects.items():
                if obj.deleted:
                    continue
                refs = (obj.raw.get("metadata") or {}).get("ownerReferences") or []
                if refs and not any(r.get("uid") in live for r in refs):
                    orphans.append(key)
            if not orphans:
                return
            for key in orphans:
                self._remove(key)


def _max_unavailable(spec: dict, want: int) -> int:
    """spec.strategy.rollingUpdate.maxUnavailable as a number of pods (a percentage rounds down)."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        try:
            return want * int(value[:-1]) // 100
        except ValueError:
            return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _node_ip(name: str) -> str:
    # ip-10-0-1-1.ec2.internal -> 10.0.1.1
    head = name.split(".", 1)[0]
    if head.startswith("ip-"):
        parts = head[3:].split("-")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return ".".join(parts)
    return f"10.0.200.{zlib.crc32(name.encode()) % 250 + 1}"

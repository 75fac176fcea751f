"""The lab's Kubernetes API emulator (plain HTTP), built on kmock 0.8's store and discovery data.

    .venv/bin/python dev/lab/services/k8s_emulator.py --port 56443 --lab-dir .lab

Serves the production cluster `ag-botkit-production-eks` at the root and any other cluster at
`/clusters/<name>/...` (own store, own seed). Writes `<lab-dir>/kubeconfig` (contexts `lab` and
`lab-dr`). Faults `k8s.node_notready`, `k8s.rollout_stuck`, `k8s.api_error` are read from
`<lab-dir>/faults/` on every request. See docs/lab/k8s.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml
from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster_faults  # noqa: E402
from _common import base_parser, fault, secrets, setup_logging  # noqa: E402
from k8s_cluster import ApiError, Cluster, Discovery, ResInfo  # noqa: E402
from k8s_kubelet import Kubelet  # noqa: E402
from k8s_util import apply_patch, dig, selector_from_match_labels, to_table  # noqa: E402

PRODUCTION = "ag-botkit-production-eks"
DR = "ag-botkit-dr-eks"
SEED_FILE = Path(__file__).resolve().parents[1] / "k8s_seed.yaml"
EXEC_TIMEOUT = 120
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
HEALTH_PATHS = {"readyz", "healthz", "livez"}
# seconds between two controller passes when no request changed anything (a change wakes them at once); make test
# sets LAB_K8S_RECONCILE_SECONDS to spend less CPU on three idle labs (README, Tests)
RECONCILE = float(os.environ.get("LAB_K8S_RECONCILE_SECONDS") or 0.25)

log = setup_logging("k8s")


# ============================================================================ seed


def seed_vars(lab_dir: Path) -> dict[str, str | None]:
    sec = secrets(lab_dir)
    env = os.environ
    return {
        "db_password": sec.get("db_password"),
        "kill_switch_token": sec.get("kill_switch_token"),
        "exchange_api_key": sec.get("exchange_api_key"),
        "exchange_api_secret": sec.get("exchange_api_secret"),
        "pg_port": env.get("LAB_PG_PORT", "55432"),
        "minibot_port": env.get("LAB_MINIBOT_PORT", "59091"),
        "rtds_port": env.get("LAB_RTDS_PORT", "58765"),
        "aws_port": env.get("LAB_AWS_PORT", "55000"),
    }


def substitute(obj: Any, values: dict[str, str | None]) -> Any:
    """Replace `${name}` in every string; a value that is exactly an unknown `${name}` drops its key."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, str) and v.startswith("${") and v.endswith("}") and values.get(v[2:-1]) is None:
                continue
            out[k] = substitute(v, values)
        return out
    if isinstance(obj, list):
        return [substitute(x, values) for x in obj]
    if isinstance(obj, str):
        for k, v in values.items():
            if v is not None:
                obj = obj.replace("${" + k + "}", str(v))
    return obj


def default_nodes(cluster: str) -> list[dict]:
    subnet = 0 if cluster == PRODUCTION else zlib.crc32(cluster.encode()) % 250 + 1
    region = "us-west-2" if "dr" in cluster.split("-") else "us-east-1"
    nodes = []
    for i, zone in enumerate("abc", start=1):
        name = f"ip-10-{subnet}-{i}-{i}.ec2.internal"
        nodes.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/region": region,
            "topology.kubernetes.io/zone": f"{region}{zone}", "eks.amazonaws.com/nodegroup": "general",
            "eks.amazonaws.com/capacityType": "ON_DEMAND"}},
            "spec": {"providerID": f"aws:///{region}{zone}/i-0{zlib.crc32(name.encode()):08x}"}})
    return nodes


# ============================================================================ the server


class Emulator:
    def __init__(self, lab_dir: Path, port: int, seed_file: Path = SEED_FILE) -> None:
        self.lab_dir = lab_dir
        self.port = port
        self.seed_file = seed_file
        self.disc = Discovery()
        self.by_kind: dict[tuple[str, str], ResInfo] = {}
        for info in self.disc.resources.values():
            self.by_kind.setdefault((info.api_version, info.kind), info)
        self.clusters: dict[str, Cluster] = {}
        self.procs: set[asyncio.subprocess.Process] = set()
        self.stopping = asyncio.Event()
        self.changed = asyncio.Event()  # set by every request that may change an object: wakes the controllers
        self.kubelet = Kubelet(lab_dir)
        self.proxy_session: Any = None

    # ------------------------------------------------------------------ clusters & seed

    def cluster(self, name: str) -> Cluster:
        if name not in self.clusters:
            c = Cluster(name, self.disc, self.lab_dir)
            c.born = time.time()
            c.kubelet = self.kubelet
            self.clusters[name] = c
            self._seed(c)
            c.reconcile(force=True)
            log.info("cluster %s ready (%d objects)", name, sum(1 for _ in c.objects.keys()))
        return self.clusters[name]

    def forget(self, name: str) -> None:
        """Drop a cluster's store and stop its pods' processes (the next request makes it anew from its seed)."""
        self.clusters.pop(name, None)
        self.kubelet.retain(name, set())
        log.info("cluster %s deleted in EKS: store dropped", name)

    def _seed(self, c: Cluster) -> None:
        docs: list[dict] = []
        if c.name == PRODUCTION and self.seed_file.exists():
            values = seed_vars(self.lab_dir)
            docs = [substitute(d, values) for d in yaml.safe_load_all(self.seed_file.read_text()) if d]
        else:
            docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                    for n in ("default", "kube-system", "kube-public", "kube-node-lease")]
        if not any(d.get("kind") == "Node" for d in docs):
            docs += default_nodes(c.name)
        docs.sort(key=lambda d: 0 if d.get("kind") == "Namespace" else 1)
        for doc in docs:
            info = self.by_kind.get((doc.get("apiVersion"), doc.get("kind")))
            if info is None:
                log.warning("seed: unknown kind %s/%s", doc.get("apiVersion"), doc.get("kind"))
                continue
            c.create(info, (doc.get("metadata") or {}).get("namespace"), doc)
        for key in list(c.changed_at):  # seeded workloads are available at once
            c.changed_at[key] = 0.0

    def write_kubeconfig(self) -> Path:
        base = f"http://127.0.0.1:{self.port}"
        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": PRODUCTION, "cluster": {"server": base}},
                         {"name": DR, "cluster": {"server": f"{base}/clusters/{DR}"}}],
            "users": [{"name": "lab-admin", "user": {"token": "lab-token"}}],
            "contexts": [{"name": "lab", "context": {"cluster": PRODUCTION, "user": "lab-admin"}},
                         {"name": "lab-dr", "context": {"cluster": DR, "user": "lab-admin"}}],
            "current-context": "lab",
        }
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        path = self.lab_dir / "kubeconfig"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    async def controllers(self) -> None:
        while not self.stopping.is_set():
            for c in list(self.clusters.values()):
                try:
                    c.reconcile()
                except Exception:
                    log.exception("controller pass failed in %s", c.name)
            # the next pass: right after a request that changed something, else after RECONCILE seconds
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), RECONCILE)  # stopping sets it too

    # ------------------------------------------------------------------ dispatch

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        start = time.monotonic()
        try:
            resp = await handler(request)
        except ApiError as e:
            resp = web.json_response(e.status(), status=e.code)
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("%s %s failed", request.method, request.path_qs)
            resp = web.json_response(ApiError(500, "InternalError", f"emulator error: {e!r}").status(), status=500)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            self.changed.set()
        if not resp.prepared:
            resp.headers.setdefault("Cache-Control", "no-cache, private")
        if request.path.rsplit("/", 1)[-1] not in HEALTH_PATHS:
            log.info("%s %s -> %s (%.0f ms)", request.method, request.path_qs, resp.status,
                     (time.monotonic() - start) * 1000)
        return resp

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        cname = PRODUCTION
        if len(parts) >= 2 and parts[0] == "clusters":
            cname, parts = parts[1], parts[2:]
        if parts and parts[0] in HEALTH_PATHS and len(parts) == 1:
            code, text = cluster_faults.health(self.lab_dir, cname, parts[0], "verbose" in request.query)
            return web.Response(text=text, status=code)
        err = fault(self.lab_dir, "k8s.api_error")
        if err is not None and (not err.get("clusters") or cname in err["clusters"]):
            code = int(err.get("status", 500))
            raise ApiError(code, "InternalError" if code >= 500 else "BadRequest",
                           err.get("message", "the lab injected an API error (fault k8s.api_error)"))
        if cname in self.clusters and cluster_faults.deleted_since(self.lab_dir, cname, self.clusters[cname].born):
            self.forget(cname)  # EKS deleted the cluster: a rebuilt one starts empty
        cluster = self.cluster(cname)
        cluster.sync_nodes()
        if not parts:
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
            paths += [f"/apis/{g}" for g in self.disc.group_versions]
            paths += [f"/apis/{g}/{v}" for g, vs in self.disc.group_versions.items() for v in vs]
            return web.json_response({"paths": sorted(paths)})
        if parts == ["version"]:
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.3-eks-4096722",
                                      "gitCommit": "0b2ffcb7f9e6d7fd3b8fdbfe3a0d6a8fc5b6e9c1",
                                      "gitTreeState": "clean", "buildDate": "2025-04-04T00:00:00Z",
                                      "goVersion": "go1.23.6", "compiler": "gc", "platform": "linux/amd64"})
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]})
        if parts == ["apis"]:
            return web.json_response(self.disc.api_group_list())
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) == 2 and parts[1] in self.disc.group_versions:
            return web.json_response(self.disc.api_group(parts[1]))
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = f"{group}/{version}" if group else version
        if gv not in self.disc.docs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return web.json_response(self.disc.docs[gv])
        return await self.resource_request(request, cluster, group, version, rest)

    async def resource_request(self, request: web.Request, cluster: Cluster, group: str, version: str,
                               rest: list[str]) -> web.StreamResponse:
        q = request.query
        watch = q.get("watch") in ("true", "1")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = "/".join(rest[2:]) or None
        if group == "" and plural in ("services", "pods") and ns and name and len(rest) >= 3 \
                and rest[2] == "proxy":
            return await self.proxy(request, cluster, plural, ns, name, rest[3:])
        info = self.disc.lookup(group, version, plural)
        if info is None or (sub and sub not in info.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if info.namespaced and name and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = "dryRun" in q
        method = request.method
        table = "as=Table" in request.headers.get("Accept", "")

        if method == "GET" and (watch or (name is None and watch)):
            fs = q.get("fieldSelector")
            if name:
                fs = ",".join(x for x in (fs, f"metadata.name={name}") if x)
            return await self.watch(request, cluster, info, ns, labels=q.get("labelSelector"), fields=fs, table=table)
        if name is None:
            if method == "GET":
                return self.list_response(cluster, info, ns, q, table)
            if method == "POST":
                body = await self.body(request)
                return web.json_response(cluster.create(info, ns, body, dry_run=dry_run), status=201)
            if method == "DELETE":
                items = cluster.delete_collection(info, ns, q.get("labelSelector"), q.get("fieldSelector"),
                                                  dry_run=dry_run)
                return web.json_response({"kind": f"{info.kind}List", "apiVersion": info.api_version,
                                          "metadata": {"resourceVersion": str(cluster.rv)}, "items": items})
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")

        if sub is None:
            if method == "GET":
                obj = cluster.get(info, ns, name)
                if table:
                    return web.json_response(to_table(info.kind, [obj], str(cluster.rv)))
                return web.json_response(obj)
            if method == "PUT":
                return web.json_response(cluster.replace(info, ns, name, await self.body(request), dry_run=dry_run))
            if method == "PATCH":
                obj, created = cluster.patch(info, ns, name, await self.body(request),
                                             request.content_type, dry_run=dry_run)
                return web.json_response(obj, status=201 if created else 200)
            if method == "DELETE":
                body = await self.body(request, required=False) or {}
                policy = q.get("propagationPolicy") or body.get("propagationPolicy")
                if (body.get("orphanDependents") is True) or q.get("orphanDependents") == "true":
                    policy = "Orphan"
                return web.json_response(cluster.delete(info, ns, name, dry_run=dry_run or "dryRun" in body,
                                                        propagation=policy))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

        if sub == "status":
            if method == "GET":
                return web.json_response(cluster.get(info, ns, name))
            if method == "PUT":
                return web.json_response(cluster.replace(info, ns, name, await self.body(request),
                                                         dry_run=dry_run, only_status=True))
            if method == "PATCH":
                obj, _ = cluster.patch(info, ns, name, await self.body(request), request.content_type,
                                       dry_run=dry_run, only_status=True)
                return web.json_response(obj)
        if sub == "scale":
            return await self.scale(request, cluster, info, ns, name, dry_run=dry_run)
        if sub == "eviction" and method == "POST":
            cluster.delete(info, ns, name, dry_run=dry_run)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "code": 201}, status=201)
        if sub == "log" and method == "GET":
            return self.pod_log(cluster, info, ns, name, q)
        if sub == "exec":
            if request.headers.get("Upgrade", "").lower() != "websocket":
                raise ApiError(400, "BadRequest", "the lab emulator serves exec over websocket "
                                                  "(v5.channel.k8s.io / v4.channel.k8s.io) only, not SPDY")
            return await self.exec(request, cluster, info, ns, name)
        raise ApiError(405, "MethodNotAllowed", f"{method} {sub} is not supported by the lab emulator")

    async def body(self, request: web.Request, required: bool = True) -> Any:
        raw = await request.read()
        if not raw.strip():
            if required:
                raise ApiError(400, "BadRequest", "the request body is empty")
            return None
        if "protobuf" in request.content_type or raw[:4] == b"k8s\x00":
            if not required:
                return None  # e.g. DeleteOptions of kubectl delete: the defaults are fine
            raise ApiError(415, "UnsupportedMediaType",
                           "the lab emulator speaks JSON and YAML only, not protobuf: instead of `kubectl create "
                           "<kind>` use `kubectl create <kind> ... --dry-run=client -o yaml | kubectl apply "
                           "--validate=false -f -`")
        try:
            if "yaml" in request.content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            if not required:
                return None
            raise ApiError(400, "BadRequest", f"cannot decode the request body: {e}") from e

    # ------------------------------------------------------------------ list / watch

    def list_response(self, cluster: Cluster, info: ResInfo, ns: str | None, q: Any, table: bool) -> web.Response:
        items = cluster.list(info, ns, q.get("labelSelector"), q.get("fieldSelector"))
        meta: dict[str, Any] = {"resourceVersion": str(cluster.rv)}
        offset = 0
        if q.get("continue"):
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(q["continue"].encode()))["offset"])
            except (ValueError, KeyError, TypeError) as e:
                raise ApiError(400, "BadRequest", "invalid continue token") from e
        limit = int(q.get("limit") or 0)
        items = items[offset:]
        if limit and len(items) > limit:
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if table:
            t = to_table(info.kind, items, str(cluster.rv))
            t["metadata"].update(meta)
            return web.json_response(t)
        return web.json_response({"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta,
                                  "items": items})

    async def watch(self, request: web.Request, cluster: Cluster, info: ResInfo, ns: str | None, *,
                    labels: str | None, fields: str | None, table: bool) -> web.StreamResponse:
        q = request.query
        w = cluster.subscribe(info, ns, labels, fields)
        rv = q.get("resourceVersion")
        if not rv or rv == "0":
            initial = [{"type": "ADDED", "object": o} for o in cluster.list(info, ns, labels, fields)]
        else:
            try:
                initial = cluster.events_since(w, int(rv))
            except ValueError:
                initial = []
        timeout = min(float(q.get("timeoutSeconds") or 1800), 3600)
        deadline = time.monotonic() + timeout
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(ev: dict) -> None:
            obj = cluster._present(info, ev["object"])
            if table:
                obj = to_table(info.kind, [obj], obj["metadata"].get("resourceVersion", ""))
            await resp.write(json.dumps({"type": ev["type"], "object": obj}).encode() + b"\n")

        try:
            for ev in initial:
                await send(ev)
            while not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(w.queue.get(), min(remaining, 1.0))
                except TimeoutError:
                    continue
                if ev is None:
                    break
                await send(ev)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cluster.watchers.discard(w)
        with contextlib.suppress(Exception):
            await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ scale / log

    async def scale(self, request: web.Request, cluster: Cluster, info: ResInfo, ns: str | None, name: str, *,
                    dry_run: bool) -> web.Response:
        def as_scale(obj: dict) -> dict:
            meta = obj["metadata"]
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                      "creationTimestamp") if k in meta},
                    "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                    "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                               "selector": selector_from_match_labels((obj.get("spec") or {}).get("selector"))}}

        obj = cluster.get(info, ns, name)
        if request.method == "GET":
            return web.json_response(as_scale(obj))
        body = await self.body(request)
        if request.method == "PUT":
            new_scale = body
        elif request.method == "PATCH":
            new_scale = apply_patch(as_scale(obj), body, request.content_type)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported on scale")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", "Scale.spec.replicas: Invalid value: must be a non-negative integer")
        obj, _ = cluster.patch(info, ns, name, {"spec": {"replicas": replicas}}, "application/merge-patch+json",
                               dry_run=dry_run)
        return web.json_response(as_scale(obj))

    def pod_log(self, cluster: Cluster, info: ResInfo, ns: str | None, name: str, q: Any) -> web.Response:
        pod = cluster.get(info, ns, name)
        labels = pod["metadata"].get("labels") or {}
        app = labels.get("app") or labels.get("app.kubernetes.io/name") or ""
        lines: list[str] = []
        service_log = self.lab_dir / "logs" / f"{app}.log" if app else None
        own = self.kubelet.log_file(cluster.name, pod["metadata"].get("uid", ""), q.get("container"))
        if own is not None:  # a pod that runs as a process: its own output
            service_log = own
        if service_log and service_log.is_file():
            with contextlib.suppress(OSError):
                lines = service_log.read_text(errors="replace").splitlines()[-1000:]
        if not lines:
            started = (pod.get("status") or {}).get("startTime", "")
            container = q.get("container") or ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
            lines = [f"{started} lab: container {container} of pod {ns}/{name} started",
                     f"{started} lab: no workload runs in the emulator; this is a placeholder log"]
        tail = q.get("tailLines")
        if tail and tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        return web.Response(text="".join(line + "\n" for line in lines), content_type="text/plain")

    # ------------------------------------------------------------------ exec

    def exec_env(self, cluster: Cluster, pod: dict, container: dict) -> dict[str, str]:
        env = dict(os.environ)
        ns = pod["metadata"].get("namespace")
        sec_info, cm_info = cluster.info("", "secrets"), cluster.info("", "configmaps")

        def lookup(kind_info: ResInfo, name: str) -> dict:
            try:
                obj = cluster.get(kind_info, ns, name)
            except ApiError:
                return {}
            data = dict(obj.get("data") or {})
            if kind_info.kind == "Secret":
                return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            return data

        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "secretRef" in src:
                env.update({prefix + k: v for k, v in lookup(sec_info, src["secretRef"].get("name", "")).items()})
            if "configMapRef" in src:
                env.update({prefix + k: v for k, v in lookup(cm_info, src["configMapRef"].get("name", "")).items()})
        for e in container.get("env") or []:
            name = e.get("name")
            if not name:
                continue
            if "value" in e:
                env[name] = str(e["value"])
                continue
            vf = e.get("valueFrom") or {}
            val = None
            if "secretKeyRef" in vf:
                val = lookup(sec_info, vf["secretKeyRef"].get("name", "")).get(vf["secretKeyRef"].get("key"))
            elif "configMapKeyRef" in vf:
                val = lookup(cm_info, vf["configMapKeyRef"].get("name", "")).get(vf["configMapKeyRef"].get("key"))
            elif "fieldRef" in vf:
                val = dig(pod, vf["fieldRef"].get("fieldPath", ""))
            if val is not None:
                env[name] = str(val)
        return env

    async def exec(self, request: web.Request, cluster: Cluster, info: ResInfo, ns: str | None,
                   name: str) -> web.StreamResponse:
        pod = cluster.get(info, ns, name)
        q = request.query
        argv = q.getall("command", [])
        containers = (pod.get("spec") or {}).get("containers") or []
        cname = q.get("container")
        container = next((c for c in containers if c.get("name") == cname), None) if cname else \
            (containers[0] if containers else {})
        if container is None:
            raise ApiError(400, "BadRequest", f"container {cname} is not valid for pod {name}")
        if (pod.get("status") or {}).get("phase") not in (None, "Running"):
            raise ApiError(400, "BadRequest", "cannot exec into a container in a completed or pending pod")
        want_stdin = q.get("stdin") in ("true", "1")
        ws = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        log.info("exec %s/%s [%s]: %s", ns, name, ws.ws_protocol, " ".join(quote(a, safe="/=-_.:") for a in argv))

        async def status(code: int, message: str = "") -> None:
            if code == 0:
                st: dict[str, Any] = {"metadata": {}, "status": "Success"}
            else:
                st = {"metadata": {}, "status": "Failure",
                      "message": message or f"command terminated with non-zero exit code: exit status {code}",
                      "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
            await ws.send_bytes(b"\x03" + json.dumps(st).encode())

        if not argv:
            await ws.send_bytes(b"\x02" + b"error: you must specify at least one command for the container\n")
            await status(1)
            await ws.close()
            return ws
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=str(self.lab_dir), env=self.exec_env(cluster, pod, container),
                stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as e:
            await ws.send_bytes(b"\x02" + f'exec: "{argv[0]}": {e.strerror}\n'.encode())
            await status(127 if isinstance(e, FileNotFoundError) else 126)
            await ws.close()
            return ws
        self.procs.add(proc)

        async def pump(stream: asyncio.StreamReader, channel: int) -> None:
            while chunk := await stream.read(65536):
                if not ws.closed:
                    await ws.send_bytes(bytes([channel]) + chunk)

        async def feed() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                ch, data = msg.data[0], msg.data[1:]
                if ch == 0 and proc.stdin is not None and data:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
                elif ch == 255 and v5 and data[:1] == b"\x00" and proc.stdin is not None:
                    proc.stdin.close()
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()  # the client went away: end of input

        feeder = asyncio.create_task(feed())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2), proc.wait()),
                                   EXEC_TIMEOUT)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        finally:
            self.procs.discard(proc)
        rc = 124 if timed_out else (proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)
        if not ws.closed:
            if timed_out:
                await ws.send_bytes(b"\x02" + f"lab: command timed out after {EXEC_TIMEOUT}s\n".encode())
            await status(rc)
            await ws.close()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        return ws

    # ------------------------------------------------------------------ service and pod proxy

    def _proxy_target(self, cluster: Cluster, plural: str, ns: str, ref: str) -> tuple[str, int]:
        """(what, local port) behind `services/[scheme:]NAME[:PORT]` or `pods/[scheme:]NAME[:PORT]`."""
        parts = ref.split(":")
        if len(parts) == 3:
            scheme, name, port = parts
        elif len(parts) == 2:
            scheme, name, port = "", parts[0], parts[1]
        else:
            scheme, name, port = "", parts[0], ""
        if scheme not in ("", "http"):
            raise ApiError(400, "BadRequest", f"the lab proxies plain http only, not {scheme}")
        pod_info = cluster.info("", "pods")
        if plural == "pods":
            pod = cluster.get(pod_info, ns, name)
            if not self.kubelet.manages(pod):
                raise ApiError(503, "ServiceUnavailable", f'pod "{name}" runs no process in the lab (image not '
                               "known to the emulator), so there is nothing to proxy to")
            wanted: Any = port or (((pod["spec"].get("containers") or [{}])[0].get("ports") or [{}])[0]
                                   .get("containerPort", ""))
            local = self.kubelet.endpoint(cluster.name, pod["metadata"]["uid"], wanted)
            if local is None:
                raise ApiError(503, "ServiceUnavailable", f'pod "{name}" has no running container on port {wanted}')
            return f"pod {ns}/{name}", local
        svc = cluster.get(cluster.info("", "services"), ns, name)
        ports = (svc.get("spec") or {}).get("ports") or []
        sp = next((p for p in ports if port in (str(p.get("port")), p.get("name"))), None) if port else \
            (ports[0] if len(ports) == 1 else None)
        if sp is None:
            raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{ref}"')
        target = sp.get("targetPort", sp.get("port"))
        selector = (svc.get("spec") or {}).get("selector") or {}
        candidates = []
        if selector:
            sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            for pod in cluster.list(pod_info, ns, sel):
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
                if not ready or not self.kubelet.manages(pod):
                    continue
                want = target
                if isinstance(target, str) and not target.isdigit():  # a named port of the container
                    want = next((p.get("containerPort") for c in pod["spec"].get("containers") or []
                                 for p in c.get("ports") or [] if p.get("name") == target), target)
                local = self.kubelet.endpoint(cluster.name, pod["metadata"]["uid"], want)
                if local is not None:
                    candidates.append((pod["metadata"]["name"], local))
        if not candidates:
            raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        pod_name, local = candidates[int(time.monotonic() * 1000) % len(candidates)]
        return f"service {ns}/{name} (pod {pod_name})", local

    async def proxy(self, request: web.Request, cluster: Cluster, plural: str, ns: str, ref: str,
                    tail: list[str]) -> web.StreamResponse:
        what, local = self._proxy_target(cluster, plural, ns, ref)
        path = "/" + "/".join(tail)
        if request.path.endswith("/") and tail:
            path += "/"
        if self.proxy_session is None:
            self.proxy_session = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "authorization", "content-length", "transfer-encoding", "connection")}
        body = await request.read()
        try:
            async with self.proxy_session.request(request.method, f"http://127.0.0.1:{local}{path}",
                                                  params=request.query, data=body or None, headers=headers,
                                                  allow_redirects=False,
                                                  timeout=aiohttp.ClientTimeout(total=30)) as r:
                payload = await r.read()
                out = {k: v for k, v in r.headers.items()
                       if k.lower() in ("content-type", "location", "cache-control", "www-authenticate")}
                return web.Response(status=r.status, body=payload, headers=out)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach {what}: {e}") from e

    # ------------------------------------------------------------------ lifecycle

    async def shutdown(self) -> None:
        self.stopping.set()
        self.changed.set()  # wakes the controllers' loop, which then sees stopping
        self.kubelet.stop_all()
        if self.proxy_session is not None:
            await self.proxy_session.close()
        for c in self.clusters.values():
            for w in list(c.watchers):
                w.queue.put_nowait(None)
        for proc in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def make_app(emu: Emulator) -> web.Application:
    app = web.Application(middlewares=[emu.middleware], client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", emu.handle)
    return app


async def serve(host: str, port: int, lab_dir: Path, seed_file: Path) -> None:
    emu = Emulator(lab_dir, port, seed_file)
    emu.cluster(PRODUCTION)
    runner = web.AppRunner(make_app(emu), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    path = emu.write_kubeconfig()
    log.info("Kubernetes API emulator serving http://%s:%d (kubeconfig %s)", host, port, path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ctl = asyncio.create_task(emu.controllers())
    probes = asyncio.create_task(emu.kubelet.probe_loop(emu.stopping))
    await stop.wait()
    log.info("stopping")
    await emu.shutdown()
    for task in (ctl, probes):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    log.info("stopped")


def main() -> None:
    ap = base_parser("Kubernetes API emulator of the lab", 56443, "LAB_K8S_PORT")
    ap.add_argument("--seed", type=Path, default=SEED_FILE, help="YAML seed of the production cluster")
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port, args.lab_dir.resolve(), args.seed))


if __name__ == "__main__":
    main()

"""The emulator's kubelet: pods of images the lab knows run as local processes.

A container whose image's repository is in KNOWN_IMAGES (the bot, the RTDS client) runs as a local
process of that lab service, on a free loopback port that the container's ports map to, with the
container's environment (`env` values, `valueFrom` secretKeyRef/configMapKeyRef/fieldRef, `envFrom`
ConfigMaps and Secrets) and its Secret/ConfigMap volumes written as files under the pod's folder
(`$LAB_POD_ROOT/<mountPath>/<key>`). httpGet readiness and liveness probes decide Ready and restarts.

Everything else keeps the emulator's older behaviour (pods are Running/Ready at once, nothing runs).
The Cluster (k8s_cluster.py) asks `sync()` for a pod's state on every controller pass; `probe_loop()`
runs beside the controllers. `<lab-dir>/k8s/processes.json` lists the running processes (for
`labctl status` and `labctl down`). See docs/lab/k8s.md, "Pods that run".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

SERVICES = Path(__file__).resolve().parent
# image repository (tag ignored) -> lab service script
KNOWN_IMAGES = {
    "ghcr.io/ag-botkit/minibot": "minibot.py",
    "ghcr.io/ag-botkit/rtds-client": "rtds_client.py",
}
RUN_ANNOTATION = "lab.agbotkit.dr/run"  # "false" on a pod template: never run it (the seed's minibot)
# seconds between two readiness probes (periodSeconds is not honoured); make test sets LAB_K8S_PROBE_SECONDS
PROBE_PERIOD = float(os.environ.get("LAB_K8S_PROBE_SECONDS") or 0.5)
LIVENESS_SPEEDUP = 5        # liveness probes run every periodSeconds / 5 (at least PROBE_PERIOD): 2 s by default
BACKOFF = (1.0, 2.0, 4.0, 8.0, 10.0)  # seconds before restarting a container that exited, by restart count
STOP_GRACE = 3.0            # SIGTERM, then SIGKILL after this many seconds
# LAB_MINIBOT_TICK: a pod's bot writes at the lab's pace
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "LAB_LOG_LEVEL", "LAB_MINIBOT_TICK")

log = logging.getLogger("k8s")


class ConfigError(Exception):
    """A Secret/ConfigMap (or one of its keys) a container needs does not exist (CreateContainerConfigError)."""


def image_repo(image: str) -> str:
    """`ghcr.io/ag-botkit/minibot:1.4.2` -> `ghcr.io/ag-botkit/minibot` (digest or tag dropped)."""
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(eq=False)
class Container:
    name: str
    script: str
    spec: dict
    log_path: Path
    proc: subprocess.Popen | None = None
    port: int = 0
    started_at: float = 0.0
    started_iso: str = ""
    restarts: int = 0
    next_start: float = 0.0
    last_exit: dict | None = None      # lastState.terminated of the previous run
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    ready: bool = False                 # readiness probe result (True without a probe once running)
    live_failures: int = 0
    live_next: float = 0.0              # monotonic time of the next liveness probe

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def probe(self, kind: str) -> dict | None:
        p = self.spec.get(kind) or {}
        return p.get("httpGet") and p

    def host_port(self, port: Any) -> int | None:
        """The process's port for a container port given by number or name."""
        ports = self.spec.get("ports") or []
        if isinstance(port, str) and not port.isdigit():
            if not any(p.get("name") == port for p in ports):
                return None
        return self.port


@dataclass(eq=False)
class PodProcs:
    cluster: str
    namespace: str
    name: str
    uid: str
    node: str
    folder: Path
    containers: list[Container] = field(default_factory=list)
    running_wanted: bool = True
    stop_reason: str = ""


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Kubelet:
    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir
        self.root = lab_dir / "k8s"
        self.pods: dict[tuple[str, str], PodProcs] = {}
        self.stopping: list[subprocess.Popen] = []   # terminated, not yet reaped
        self._listed: str = ""
        self._stop_leftovers()

    def _stop_leftovers(self) -> None:
        """An emulator that was killed (no SIGTERM) left its pods' processes: stop them, forget their folders."""
        try:
            rows = json.loads((self.root / "processes.json").read_text())
        except (OSError, ValueError):
            rows = []
        for row in rows if isinstance(rows, list) else []:
            try:
                pid = int(row["pid"])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (OSError, KeyError, TypeError, ValueError):
                continue
            if row.get("folder") and row["folder"] in cmdline:  # still that process, not a reused pid
                log.warning("stopping pid %d of pod %s/%s left by a previous emulator", pid, row.get("namespace"),
                            row.get("pod"))
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root / "pods")
        self.write_list()

    # ------------------------------------------------------------------ which pods

    @staticmethod
    def manages(pod: dict) -> bool:
        meta = pod.get("metadata") or {}
        if (meta.get("annotations") or {}).get(RUN_ANNOTATION) == "false":
            return False
        if any(r.get("kind") == "Job" for r in meta.get("ownerReferences") or []):
            return False
        containers = (pod.get("spec") or {}).get("containers") or []
        return bool(containers) and all(image_repo(c.get("image", "")) in KNOWN_IMAGES for c in containers)

    # ------------------------------------------------------------------ the pod's state (called by the Cluster)

    def sync(self, cluster: Any, pod: dict, run: bool, why_not: str = "") -> dict:
        """Start, restart or stop the pod's processes as `run` says; return its kubelet view:
        {"running": bool, "containers": [{name, ready, state, lastState, restartCount, containerID}]}."""
        meta = pod["metadata"]
        key = (cluster.name, meta["uid"])
        pp = self.pods.get(key)
        if pp is None:
            folder = self.root / "pods" / cluster.name / meta.get("namespace", "default") / meta["name"]
            pp = PodProcs(cluster.name, meta.get("namespace", "default"), meta["name"], meta["uid"],
                          (pod.get("spec") or {}).get("nodeName", ""), folder)
            for c in (pod.get("spec") or {}).get("containers") or []:
                pp.containers.append(Container(c.get("name", "main"), KNOWN_IMAGES[image_repo(c.get("image", ""))],
                                               c, folder / f"{c.get('name', 'main')}.log"))
            self.pods[key] = pp
        pp.running_wanted = run
        pp.stop_reason = why_not
        now = time.monotonic()
        for c in pp.containers:
            if not run:
                if c.proc is not None:
                    self._terminate(c)
                    c.last_exit = {"exitCode": 143, "reason": why_not or "Stopped", "startedAt": c.started_iso,
                                   "finishedAt": _now_iso()}
                c.waiting = (why_not or "Stopped", "the lab stopped the process")
                c.ready = False
                continue
            if c.proc is not None and c.proc.poll() is not None:  # exited
                code = c.proc.returncode
                log.warning("pod %s/%s container %s (pid %d) exited with %s", pp.namespace, pp.name, c.name,
                            c.proc.pid, code)
                c.last_exit = {"exitCode": code if code >= 0 else 128 - code,
                               "reason": "Completed" if code == 0 else "Error",
                               "startedAt": c.started_iso, "finishedAt": _now_iso()}
                c.proc = None
                c.ready = False
                c.next_start = now + BACKOFF[min(c.restarts, len(BACKOFF) - 1)]
                c.restarts += 1
                c.waiting = ("CrashLoopBackOff", f"back-off restarting container {c.name}")
            if c.proc is None and now >= c.next_start:
                try:
                    self._start(cluster, pod, pp, c)
                except ConfigError as e:
                    c.waiting = ("CreateContainerConfigError", str(e))
                    c.next_start = now + 1.0
                except OSError as e:
                    c.waiting = ("RunContainerError", str(e))
                    c.next_start = now + BACKOFF[min(c.restarts, len(BACKOFF) - 1)]
        self.write_list()
        return self.view(pp)

    def view(self, pp: PodProcs) -> dict:
        out = []
        for c in pp.containers:
            running = c.running
            st: dict[str, Any] = {"name": c.name, "ready": running and c.ready, "restartCount": c.restarts,
                                  "started": running}
            if running:
                st["state"] = {"running": {"startedAt": c.started_iso}}
                st["containerID"] = f"lab://{c.proc.pid}"
            else:
                reason, message = c.waiting or ("ContainerCreating", "")
                st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            if c.last_exit:
                st["lastState"] = {"terminated": c.last_exit}
            out.append(st)
        return {"running": any(c.running for c in pp.containers), "containers": out}

    def endpoint(self, cluster_name: str, uid: str, port: Any) -> int | None:
        """The local port of the pod's container serving `port` (number or name), if running and ready."""
        pp = self.pods.get((cluster_name, uid))
        if pp is None:
            return None
        for c in pp.containers:
            declared = {p.get("containerPort") for p in c.spec.get("ports") or []}
            names = {p.get("name") for p in c.spec.get("ports") or []}
            wanted = int(port) if isinstance(port, int) or str(port).isdigit() else port
            if c.running and (wanted in declared or wanted in names or len(pp.containers) == 1):
                return c.port
        return None

    def log_file(self, cluster_name: str, uid: str, container: str | None) -> Path | None:
        pp = self.pods.get((cluster_name, uid))
        if pp is None:
            return None
        for c in pp.containers:
            if container in (None, "", c.name):
                return c.log_path
        return None

    # ------------------------------------------------------------------ start / stop

    def _env(self, cluster: Any, pod: dict, pp: PodProcs, c: Container) -> dict[str, str]:
        ns = pp.namespace
        base = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        base.update({"HOME": str(pp.folder), "HOSTNAME": pp.name, "PYTHONUNBUFFERED": "1",
                     "LAB_POD_ROOT": str(pp.folder / "root"), "PORT": str(c.port)})
        sec_info, cm_info = cluster.info("", "secrets"), cluster.info("", "configmaps")

        def source(info: Any, name: str, optional: bool) -> dict[str, str] | None:
            obj = cluster._load(cluster._key(info, ns, name))
            if obj is None:
                if optional:
                    return None
                raise ConfigError(f'{info.kind.lower()} "{name}" not found')
            data = dict(obj.get("data") or {})
            if info.kind == "Secret":
                return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            return {k: str(v) for k, v in data.items()}

        env = dict(base)
        for src in c.spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for field_name, info in (("secretRef", sec_info), ("configMapRef", cm_info)):
                ref = src.get(field_name)
                if ref:
                    data = source(info, ref.get("name", ""), bool(ref.get("optional"))) or {}
                    env.update({prefix + k: v for k, v in data.items()})
        for e in c.spec.get("env") or []:
            name = e.get("name")
            if not name:
                continue
            if "value" in e:
                env[name] = str(e["value"])
                continue
            vf = e.get("valueFrom") or {}
            for field_name, info in (("secretKeyRef", sec_info), ("configMapKeyRef", cm_info)):
                ref = vf.get(field_name)
                if ref:
                    optional = bool(ref.get("optional"))
                    data = source(info, ref.get("name", ""), optional)
                    if data is not None and ref.get("key") in data:
                        env[name] = data[ref["key"]]
                    elif not optional:
                        raise ConfigError(f"couldn't find key {ref.get('key')} in {info.kind} "
                                          f"{ns}/{ref.get('name')}")
            if "fieldRef" in vf:
                path = vf["fieldRef"].get("fieldPath", "")
                val = {"metadata.name": pp.name, "metadata.namespace": ns, "spec.nodeName": pp.node,
                       "metadata.uid": pp.uid}.get(path)
                if val is None:
                    cur: Any = pod
                    for piece in path.split("."):
                        cur = cur.get(piece) if isinstance(cur, dict) else None
                    val = cur
                if val is not None:
                    env[name] = str(val)
        return env

    def _volumes(self, cluster: Any, pod: dict, pp: PodProcs, c: Container) -> None:
        """Secret and ConfigMap volumes as files under $LAB_POD_ROOT/<mountPath>."""
        vols = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        sec_info, cm_info = cluster.info("", "secrets"), cluster.info("", "configmaps")
        for m in c.spec.get("volumeMounts") or []:
            vol = vols.get(m.get("name"))
            if vol is None:
                raise ConfigError(f'volume "{m.get("name")}" is not declared in the pod')
            if "secret" in vol:
                src, info, name = vol["secret"], sec_info, vol["secret"].get("secretName", "")
            elif "configMap" in vol:
                src, info, name = vol["configMap"], cm_info, vol["configMap"].get("name", "")
            else:
                continue  # emptyDir and the rest: an empty folder
            obj = cluster._load(cluster._key(info, pp.namespace, name))
            target = pp.folder / "root" / m.get("mountPath", "/").lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            if obj is None:
                if src.get("optional"):
                    continue
                raise ConfigError(f'{info.kind.lower()} "{name}" not found (volume {m.get("name")})')
            data = dict(obj.get("data") or {})
            if info.kind == "Secret":
                data = {k: base64.b64decode(v) for k, v in data.items()}
            else:
                data = {k: str(v).encode() for k, v in data.items()}
            items = src.get("items")
            pairs = [(i["key"], i.get("path", i["key"])) for i in items] if items else [(k, k) for k in data]
            mode = int(src.get("defaultMode", 0o644))
            for k, rel in pairs:
                if k not in data:
                    raise ConfigError(f"couldn't find key {k} in {info.kind} {pp.namespace}/{name}")
                f = target / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data[k])
                f.chmod(mode & 0o777)

    def _start(self, cluster: Any, pod: dict, pp: PodProcs, c: Container) -> None:
        pp.folder.mkdir(parents=True, exist_ok=True)
        pp.folder.chmod(0o700)
        c.port = c.port or free_port()
        env = self._env(cluster, pod, pp, c)
        self._volumes(cluster, pod, pp, c)
        argv = [sys.executable, str(SERVICES / c.script), "--host", "127.0.0.1", "--port", str(c.port),
                "--lab-dir", str(pp.folder)]
        with c.log_path.open("ab") as out:
            c.proc = subprocess.Popen(argv, cwd=pp.folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        c.started_at = time.monotonic()
        c.started_iso = _now_iso()
        c.ready = False
        c.live_failures = 0
        c.live_next = 0.0
        c.waiting = None
        log.info("pod %s/%s (%s) container %s: pid %d on 127.0.0.1:%d", pp.namespace, pp.name, pp.cluster,
                 c.name, c.proc.pid, c.port)

    def _terminate(self, c: Container) -> None:
        proc, c.proc = c.proc, None
        c.ready = False
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        self.stopping.append(proc)
        proc.lab_deadline = time.monotonic() + STOP_GRACE  # type: ignore[attr-defined]

    def reap(self) -> None:
        for proc in list(self.stopping):
            if proc.poll() is not None:
                self.stopping.remove(proc)
            elif time.monotonic() > proc.lab_deadline:  # type: ignore[attr-defined]
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def remove(self, cluster_name: str, uid: str) -> None:
        """The pod is gone: stop its processes and drop its folder."""
        pp = self.pods.pop((cluster_name, uid), None)
        if pp is None:
            return
        for c in pp.containers:
            if c.proc is not None:
                log.info("pod %s/%s deleted: stopping container %s (pid %d)", pp.namespace, pp.name, c.name,
                         c.proc.pid)
            self._terminate(c)
        with contextlib.suppress(OSError):
            shutil.rmtree(pp.folder / "root")
        self.write_list()

    def retain(self, cluster_name: str, live_uids: set[str]) -> None:
        for cname, uid in list(self.pods):
            if cname == cluster_name and uid not in live_uids:
                self.remove(cname, uid)

    def stop_all(self) -> None:
        for key in list(self.pods):
            self.remove(*key)
        end = time.monotonic() + STOP_GRACE
        while self.stopping and time.monotonic() < end:
            self.stopping = [p for p in self.stopping if p.poll() is None]
            time.sleep(0.05)
        for proc in self.stopping:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.stopping = []
        self.write_list()

    def write_list(self) -> None:
        rows = []
        for pp in self.pods.values():
            for c in pp.containers:
                if c.running:
                    rows.append({"cluster": pp.cluster, "namespace": pp.namespace, "pod": pp.name,
                                 "container": c.name, "pid": c.proc.pid, "port": c.port, "ready": c.ready,
                                 "folder": str(pp.folder)})
        text = json.dumps(rows, indent=1)
        if text == self._listed:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "processes.json.tmp"
        tmp.write_text(text + "\n")
        tmp.replace(self.root / "processes.json")
        self._listed = text

    # ------------------------------------------------------------------ probes

    async def probe_loop(self, stopping: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stopping.is_set():
                try:
                    self.reap()
                    jobs = [self._probe(http, c) for pp in list(self.pods.values()) for c in pp.containers
                            if c.running]
                    for res in await asyncio.gather(*jobs, return_exceptions=True):
                        if isinstance(res, Exception):
                            log.error("probe failed: %r", res)
                except Exception:
                    log.exception("probe pass failed")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), PROBE_PERIOD)

    async def _http_ok(self, http: aiohttp.ClientSession, c: Container, probe: dict) -> bool:
        get = probe["httpGet"]
        port = c.host_port(get.get("port"))
        if port is None:
            return False
        path = get.get("path") or "/"
        headers = {h.get("name"): h.get("value", "") for h in get.get("httpHeaders") or [] if h.get("name")}
        try:
            timeout = aiohttp.ClientTimeout(total=float(probe.get("timeoutSeconds", 1)))
            async with http.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=timeout,
                                allow_redirects=False) as r:
                return 200 <= r.status < 400
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _probe(self, http: aiohttp.ClientSession, c: Container) -> None:
        proc = c.proc
        age = time.monotonic() - c.started_at
        rp = c.probe("readinessProbe")
        if rp is None:
            c.ready = True
        elif age >= float(rp.get("initialDelaySeconds", 0)):
            ok = await self._http_ok(http, c, rp)
            if c.proc is proc:
                c.ready = ok
        lp = c.probe("livenessProbe")
        if lp is not None and age >= float(lp.get("initialDelaySeconds", 0)) and time.monotonic() >= c.live_next:
            c.live_next = time.monotonic() + max(PROBE_PERIOD, float(lp.get("periodSeconds", 10)) / LIVENESS_SPEEDUP)
            ok = await self._http_ok(http, c, lp)
            if c.proc is not proc:
                return
            c.live_failures = 0 if ok else c.live_failures + 1
            if c.live_failures >= int(lp.get("failureThreshold", 3)) and proc is not None:
                log.warning("container %s (pid %d) failed its liveness probe %d times: killing it", c.name,
                            proc.pid, c.live_failures)
                c.live_failures = 0
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the next sync sees it exited and restarts it

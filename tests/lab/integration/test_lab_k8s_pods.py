"""Pods that run: the emulator runs deploy/k8s's bot as a real process with its Secret (issue 10, section 2).

Needs the lab (`make lab-up`): the bot logs in to the lab's PostgreSQL. Everything happens in one namespace of
the DR cluster (context lab-dr), removed at the end; the module shares one deployment of the bot.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
NS = "lab-pods-test"
DR = "/clusters/ag-botkit-dr-eks"
MANIFESTS = ROOT / "deploy" / "k8s"


# --------------------------------------------------------------------------- helpers


def api(lab, method: str, path: str, body: dict | None = None,
        content_type: str = "application/json") -> tuple[int, dict | str]:
    url = f"http://127.0.0.1:{lab['ports']['k8s']}{DR}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def apply(lab, doc: dict) -> dict:
    kind = doc["kind"]
    plural = {"ConfigMap": "configmaps", "Secret": "secrets", "Service": "services", "Pod": "pods",
              "Deployment": "deployments", "Namespace": "namespaces"}[kind]
    base = "/apis/apps/v1" if kind == "Deployment" else "/api/v1"
    coll = f"{base}/{plural}" if kind == "Namespace" else f"{base}/namespaces/{NS}/{plural}"
    status, out = api(lab, "POST", coll, doc)
    if status == 409:
        status, out = api(lab, "PATCH", f"{coll}/{doc['metadata']['name']}", doc, "application/merge-patch+json")
    assert status in (200, 201), out
    return out


def kubectl(lab_env, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--context", "lab-dr", "-n", NS, *args], env=lab_env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def bot_manifests() -> list[dict]:
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "20-minibot.yaml").read_text()) if d]
    for d in docs:
        d["metadata"]["namespace"] = NS
    return docs


def pods(lab, selector: str) -> list[dict]:
    status, out = api(lab, "GET", f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}")
    assert status == 200, out
    return out["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def pid_of(pod: dict) -> int | None:
    cid = (pod["status"].get("containerStatuses") or [{}])[0].get("containerID", "")
    return int(cid.split("://", 1)[1]) if cid.startswith("lab://") else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def wait_for(what: str, fn, timeout: float = 20.0, every: float = 0.2):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what} within {timeout:.0f} s (last: {last!r})")


def deployment(lab, name: str) -> dict:
    status, out = api(lab, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
    assert status == 200, out
    return out


def the_bot(lab, name: str = "minibot") -> dict:
    """The one Ready pod of deployment `name` (waits for it)."""
    def one():
        items = [p for p in pods(lab, f"app.kubernetes.io/name={name}") if ready(p) and pid_of(p)]
        return items[0] if len(items) == 1 else None
    return wait_for(f"one Ready pod of {name}", one)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


# --------------------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def bot(lab):
    """deploy/k8s's ConfigMap, minibot Deployment and Service in namespace NS of the DR cluster, the Secret made
    after the Deployment (so its pod first waits on the missing Secret), pointed at the lab's PostgreSQL."""
    api(lab, "DELETE", f"/api/v1/namespaces/{NS}")
    wait_for("no leftover namespace", lambda: api(lab, "GET", f"/api/v1/namespaces/{NS}")[0] == 404)
    apply(lab, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cm = yaml.safe_load((MANIFESTS / "10-configmap.yaml").read_text())
    cm["metadata"]["namespace"] = NS
    cm["data"].update({"DATABASE_HOST": "127.0.0.1", "DATABASE_PORT": str(lab["ports"]["pg"])})
    apply(lab, cm)
    for doc in bot_manifests():
        apply(lab, doc)
    yield lab
    api(lab, "DELETE", f"/api/v1/namespaces/{NS}")


def secret(lab, name: str, password: str) -> None:
    apply(lab, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
                "stringData": {"DATABASE_PASSWORD": password, "KILL_SWITCH_TOKEN": "pod-token",
                               "EXCHANGE_API_KEY": "pod-exchange-key", "EXCHANGE_API_SECRET": "pod-exchange-secret"}})


# --------------------------------------------------------------------------- tests


def test_bot_runs_with_the_secret_and_logs_in(bot, lab_env):
    lab = bot
    # the Secret does not exist yet: the container cannot be configured, nothing runs, not available
    def waiting():
        items = pods(lab, "app.kubernetes.io/name=minibot")
        st = items and (items[0]["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting")
        return st if st and st.get("reason") == "CreateContainerConfigError" else None
    state = wait_for("the pod waits on its Secret", waiting)
    assert 'secret "ag-botkit-secrets" not found' in state["message"]
    assert not deployment(lab, "minibot")["status"].get("availableReplicas")

    password = lab["secrets"]["db_password"]
    secret(lab, "ag-botkit-secrets", password)
    pod = the_bot(lab)
    pid = pid_of(pod)
    assert alive(pid)
    env = environ(pid)
    assert env["DATABASE_PASSWORD"] == password          # secretKeyRef
    assert env["EXCHANGE_API_KEY"] == "pod-exchange-key"  # secretKeyRef
    assert env["DATABASE_PORT"] == str(lab["ports"]["pg"]) and env["DATABASE_HOST"] == "127.0.0.1"  # envFrom
    assert "PGPASSWORD" not in env  # nothing of the emulator's own environment
    dep = wait_for("deployment minibot available",
                   lambda: (d := deployment(lab, "minibot"))["status"].get("availableReplicas") == 1 and d)
    assert {c["type"]: c["status"] for c in dep["status"]["conditions"]}["Available"] == "True"
    # the bot really logged in with it: it writes orders and says which database it uses
    status, health = api(lab, "GET", f"/api/v1/namespaces/{NS}/services/minibot:http/proxy/health")
    assert status == 200, health
    assert health["db"] == "ok"
    assert health["database"]["port"] == str(lab["ports"]["pg"]) and health["database"]["source"].startswith(
        "DATABASE_*")
    wait_for("orders written by the pod's bot", lambda: api(
        lab, "GET", f"/api/v1/namespaces/{NS}/services/minibot:9091/proxy/health")[1]["orders_written"] > 0)
    # its kill-switch token is the Secret's, through the pod proxy too
    status, _ = api(lab, "GET", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/proxy/api/kill-switch")
    assert status == 200
    logs = kubectl(lab_env, "logs", pod["metadata"]["name"])
    assert "connected to the database" in logs.stdout, logs.stdout[-2000:] + logs.stderr


def test_wrong_password_never_ready(bot, lab_env):
    lab = bot
    secret(lab, "wrong-secrets", "not-the-password")
    docs = bot_manifests()
    dep = docs[0]
    dep["metadata"]["name"] = "minibot-wrongpw"
    labels = {"app.kubernetes.io/name": "minibot-wrongpw"}
    dep["spec"]["selector"]["matchLabels"] = labels
    dep["spec"]["template"]["metadata"]["labels"] = labels
    for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
        e["valueFrom"]["secretKeyRef"]["name"] = "wrong-secrets"
    apply(lab, dep)
    pod = wait_for("the bot with the wrong password runs",
                   lambda: next((p for p in pods(lab, "app.kubernetes.io/name=minibot-wrongpw") if pid_of(p)), None))
    assert alive(pid_of(pod))
    time.sleep(4)  # several probe periods
    pod = pods(lab, "app.kubernetes.io/name=minibot-wrongpw")[0]
    assert not ready(pod)
    status = deployment(lab, "minibot-wrongpw")["status"]
    assert not status.get("availableReplicas") and status.get("unavailableReplicas") == 1
    assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "False"
    code, health = api(lab, "GET", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}:9091/proxy/health")
    assert code == 503 and "password authentication failed" in health["db_error"]
    out = kubectl(lab_env, "rollout", "status", "deployment/minibot-wrongpw", "--timeout=3s")
    assert out.returncode != 0
    api(lab, "DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/minibot-wrongpw")
    wait_for("its process stopped with the deployment", lambda: not alive(pid_of(pod)))


def test_service_without_ready_endpoints_answers_503(bot):
    apply(bot, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody", "namespace": NS},
                "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}})
    status, body = api(bot, "GET", f"/api/v1/namespaces/{NS}/services/nobody:80/proxy/health")
    assert status == 503 and 'no endpoints available for service "nobody"' in body["message"]


def test_rollout_restart_replaces_the_process(bot, lab_env):
    old = pid_of(the_bot(bot))
    out = kubectl(lab_env, "rollout", "restart", "deployment/minibot")
    assert out.returncode == 0, out.stderr
    out = kubectl(lab_env, "rollout", "status", "deployment/minibot", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    new = pid_of(the_bot(bot))
    assert new != old and alive(new)
    wait_for("the old process stopped", lambda: not alive(old))


def test_liveness_probe_restarts_a_dead_process(bot):
    pod = the_bot(bot)
    pid = pid_of(pod)
    os.kill(pid, signal.SIGSTOP)  # hangs: the liveness probe times out, the kubelet kills and restarts it
    try:
        def restarted():
            p = pods(bot, "app.kubernetes.io/name=minibot")[0]
            st = p["status"]["containerStatuses"][0]
            return st["restartCount"] >= 1 and pid_of(p) not in (None, pid) and p
        p = wait_for("the hung bot restarted", restarted, timeout=30)
        assert p["metadata"]["name"] == pod["metadata"]["name"]  # the same pod, a new process
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    the_bot(bot)


def test_node_notready_stops_the_pods_and_ready_brings_them_back(bot, fault):
    pod = the_bot(bot)
    pid = pid_of(pod)
    fault("k8s.node_notready", {"nodes": [pod["spec"]["nodeName"]], "clusters": ["ag-botkit-dr-eks"]})
    wait_for("the process on the NotReady node stopped", lambda: not alive(pid))
    p = pods(bot, "app.kubernetes.io/name=minibot")[0]
    assert p["metadata"]["name"] == pod["metadata"]["name"] and not ready(p)
    wait_for("deployment minibot unavailable",
             lambda: not deployment(bot, "minibot")["status"].get("availableReplicas"))
    status, _ = api(bot, "GET", f"/api/v1/namespaces/{NS}/services/minibot:http/proxy/health")
    assert status == 503
    (Path(bot["lab_dir"]) / "faults" / "k8s.node_notready").unlink()
    back = the_bot(bot)
    assert back["metadata"]["name"] == pod["metadata"]["name"] and pid_of(back) != pid


def test_secret_volume_and_unknown_images(bot):
    pw = bot["secrets"]["db_password"]
    apply(bot, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-file", "namespace": NS},
                "data": {"password": base64.b64encode(pw.encode()).decode()}})
    apply(bot, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bot-file", "namespace": NS,
                                                                "labels": {"app": "bot-file"}},
                "spec": {"volumes": [{"name": "db", "secret": {"secretName": "db-file", "defaultMode": 0o400}}],
                         "containers": [{
                             "name": "bot", "image": "ghcr.io/ag-botkit/minibot:1.4.2",
                             "ports": [{"containerPort": 9091}],
                             "env": [{"name": "DATABASE_HOST", "value": "127.0.0.1"},
                                     {"name": "DATABASE_PORT", "value": str(bot["ports"]["pg"])},
                                     {"name": "DATABASE_PASSWORD_FILE", "value": "/etc/ag-botkit/db/password"},
                                     {"name": "KILL_SWITCH_INITIAL_STATE", "value": "halted"}],
                             "volumeMounts": [{"name": "db", "mountPath": "/etc/ag-botkit/db"}],
                             "readinessProbe": {"httpGet": {"path": "/health", "port": 9091}}}]}})
    pod = wait_for("pod bot-file Ready", lambda: next((p for p in pods(bot, "app=bot-file") if ready(p)), None))
    env = environ(pid_of(pod))
    assert "DATABASE_PASSWORD" not in env
    mounted = Path(env["LAB_POD_ROOT"]) / "etc/ag-botkit/db/password"
    assert mounted.read_text() == pw and oct(mounted.stat().st_mode & 0o777) == "0o400"
    status, health = api(bot, "GET", f"/api/v1/namespaces/{NS}/pods/bot-file/proxy/health")
    assert status == 200 and health["state"] == "halted" and health["orders_written"] == 0
    # an image the lab does not know: Ready at once, nothing runs, nothing to proxy to
    apply(bot, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "namespace": NS},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]}})
    status, other = api(bot, "GET", f"/api/v1/namespaces/{NS}/pods/other")
    assert ready(other) and pid_of(other) is None
    status, body = api(bot, "GET", f"/api/v1/namespaces/{NS}/pods/other/proxy/")
    assert status == 503 and "runs no process" in body["message"]


def test_labctl_status_lists_pod_processes(bot, lab_env):
    pod = the_bot(bot)
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "dev/lab/labctl.py", "status"], cwd=ROOT, env=lab_env,
                         capture_output=True, text=True, timeout=60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if pod["metadata"]["name"] in ln), "")
    assert f"pid {pid_of(pod)}" in line and f"ag-botkit-dr-eks/{NS}/" in line, out.stdout


def test_namespace_deletion_is_asynchronous(bot):
    pid = pid_of(the_bot(bot))
    status, ns = api(bot, "DELETE", f"/api/v1/namespaces/{NS}")
    assert status == 200 and ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    status, ns = api(bot, "GET", f"/api/v1/namespaces/{NS}")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    status, err = api(bot, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                      {"metadata": {"name": "late"}, "data": {}})
    assert status == 403 and "being terminated" in err["message"]
    wait_for("the namespace gone", lambda: api(bot, "GET", f"/api/v1/namespaces/{NS}")[0] == 404)
    status, _ = api(bot, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/minibot")
    assert status == 404
    wait_for("the bot's process stopped with its namespace", lambda: not alive(pid))


APP_NS = "lab-app-deploy-test"


def test_app_deploy_refuses_an_incomplete_secret(lab, run_playbook):
    proc = run_playbook(ROOT / "tests/lab/integration/playbooks/app_deploy_pods.yml", extra_vars={
        "app_deploy_namespace": APP_NS,
        "app_deploy_secrets": {"DATABASE_PASSWORD": "", "KILL_SWITCH_TOKEN": "t", "EXCHANGE_API_KEY": "k",
                               "EXCHANGE_API_SECRET": ""}})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Secret ag-botkit-secrets would lack DATABASE_PASSWORD, EXCHANGE_API_SECRET" in out, out[-3000:]
    assert api(lab, "GET", f"/api/v1/namespaces/{APP_NS}")[0] == 404  # nothing applied


def test_app_deploy_runs_the_bot_with_its_secret(lab, run_playbook):
    try:
        proc = run_playbook(ROOT / "tests/lab/integration/playbooks/app_deploy_pods.yml",
                            extra_vars={"app_deploy_namespace": APP_NS})
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        assert "Available in ag-botkit-dr-eks: api, minibot, rtds-client" in out
        for value in (lab["secrets"]["db_password"], lab["secrets"]["exchange_api_secret"]):
            assert value not in out  # no_log
        status, sec = api(lab, "GET", f"/api/v1/namespaces/{APP_NS}/secrets/ag-botkit-secrets")
        assert status == 200 and "kubectl.kubernetes.io/last-applied-configuration" not in (
            sec["metadata"].get("annotations") or {})
        assert base64.b64decode(sec["data"]["DATABASE_PASSWORD"]).decode() == lab["secrets"]["db_password"]
        status, health = api(lab, "GET", f"/api/v1/namespaces/{APP_NS}/services/minibot:http/proxy/health")
        assert status == 200 and health["db"] == "ok" and health["database"]["port"] == str(lab["ports"]["pg"])
        status, feed = api(lab, "GET", f"/api/v1/namespaces/{APP_NS}/services/rtds-client:http/proxy/health")
        assert status == 200 and feed["connected"] and feed["ticks"] > 0
    finally:
        api(lab, "DELETE", f"/api/v1/namespaces/{APP_NS}")

"""The lab's Kubernetes API emulator, driven by kubernetes.core, kubectl and the Python client.

Uses the running lab's emulator when `.lab/lab.json` exists (ports.k8s, `.lab/kubeconfig`);
otherwise starts its own emulator on a free port with a temporary lab dir for this module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
EMULATOR = ROOT / "dev" / "lab" / "services" / "k8s_emulator.py"
PLAYBOOK = ROOT / "tests" / "lab" / "integration" / "playbooks" / "k8s_smoke.yml"



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200 and r.read() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def k8s(tmp_path_factory):
    """{"port", "lab_dir", "kubeconfig", "env", "url"} of a serving emulator."""
    lab_json = LAB_DIR / "lab.json"
    proc = None
    if lab_json.exists():
        data = json.loads(lab_json.read_text())
        port = int(data["ports"]["k8s"])
        lab_dir = Path(data.get("lab_dir", LAB_DIR))
        assert _ready(port), f"the lab is up but its Kubernetes emulator does not answer on {port}"
    else:
        port = _free_port()
        lab_dir = tmp_path_factory.mktemp("k8slab")
        # secrets like the lab's; the db password is the real one when the lab generated one
        real = LAB_DIR / "secrets.json"
        secrets = json.loads(real.read_text()) if real.exists() else {"db_password": "lab-test-pw"}
        (lab_dir / "secrets.json").write_text(json.dumps(secrets))
        log = (lab_dir / "k8s.log").open("w")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(EMULATOR), "--port", str(port), "--lab-dir", str(lab_dir)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        while not _ready(port):
            assert proc.poll() is None, (lab_dir / "k8s.log").read_text()
            assert time.monotonic() - started < 10, "the emulator did not become ready within 10 s"
            time.sleep(0.05)
        assert time.monotonic() - started < 3, "the emulator must be ready within 3 s"
    kubeconfig = lab_dir / "kubeconfig"
    env = dict(os.environ)
    env.update({"KUBECONFIG": str(kubeconfig), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "KUBECACHEDIR": str(tmp_path_factory.mktemp("kubecache")),
                "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"})
    pg_port = int(json.loads(lab_json.read_text())["ports"]["pg"]) if lab_json.exists() else 55432
    yield {"port": port, "lab_dir": lab_dir, "kubeconfig": kubeconfig, "env": env, "pg_port": pg_port,
           "url": f"http://127.0.0.1:{port}", "own": proc is not None}
    if proc is not None:
        proc.terminate()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the emulator did not exit within 10 s of SIGTERM")
        assert rc == 0, f"the emulator exited with {rc} on SIGTERM"


@pytest.fixture
def k8s_fault(k8s):
    """Turn an emulator fault on in the emulator's lab dir; cleared after the test."""
    made: list[Path] = []

    def _on(name: str, options: dict | None = None) -> None:
        p = k8s["lab_dir"] / "faults" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(options or {}))
        made.append(p)

    yield _on
    for p in made:
        p.unlink(missing_ok=True)


def kubectl(k8s, *args: str, stdin: str | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], env=k8s["env"], input=stdin, capture_output=True, text=True, check=False,
                          timeout=timeout)


def get_json(k8s, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(k8s["url"] + path, headers={"Authorization": "Bearer anything"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def nodes_ready(k8s, context: str = "lab") -> dict[str, str]:
    out = kubectl(k8s, "--context", context, "get", "nodes", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
            for n in doc["items"]}


# --------------------------------------------------------------------------- tests


def test_discovery_and_errors(k8s):
    status, v1 = get_json(k8s, "/api/v1")
    assert status == 200 and v1["groupVersion"] == "v1" and v1["kind"] == "APIResourceList"
    status, apis = get_json(k8s, "/apis")
    names = {g["name"] for g in apis["groups"]}
    for group in ("apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy",
                  "coordination.k8s.io"):
        assert group in names
        status, doc = get_json(k8s, f"/apis/{group}/v1")
        assert status == 200 and doc["groupVersion"] == f"{group}/v1"
    status, ns = get_json(k8s, "/api/v1/namespaces/ag-botkit")
    assert status == 200 and ns["kind"] == "Namespace" and ns["metadata"]["name"] == "ag-botkit"
    status, lst = get_json(k8s, "/api/v1/namespaces/ag-botkit/pods?labelSelector=app%3Dtimescaledb")
    assert lst["kind"] == "PodList" and lst["apiVersion"] == "v1"
    assert [p["metadata"]["name"] for p in lst["items"]] == ["timescaledb-0"]
    status, lst = get_json(k8s, "/api/v1/pods?fieldSelector=status.phase%3DRunning,metadata.namespace%3Dag-botkit")
    assert len(lst["items"]) >= 2
    status, lst = get_json(k8s, "/api/v1/namespaces/ag-botkit/secrets?limit=1")
    assert len(lst["items"]) == 1 and lst["metadata"]["continue"]
    status, err = get_json(k8s, "/api/v1/namespaces/ag-botkit/pods/nope")
    assert status == 404 and err["kind"] == "Status" and err["reason"] == "NotFound"


def test_seed(k8s):
    secret = json.loads(kubectl(k8s, "get", "secret", "timescaledb-credentials", "-n", "ag-botkit",
                                "-o", "json").stdout)
    assert set(secret["data"]) >= {"PGUSER", "PGDATABASE"}
    pod = json.loads(kubectl(k8s, "get", "pod", "timescaledb-0", "-n", "ag-botkit", "-o", "json").stdout)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["PGHOST"] == "127.0.0.1" and env["PGUSER"] == "agbot" and env["PGDATABASE"] == "ag_botkit"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    dep = json.loads(kubectl(k8s, "get", "deployment", "minibot", "-n", "ag-botkit", "-o", "json").stdout)
    assert dep["metadata"]["labels"]["app"] == "minibot"


def test_kubectl_nodes_ready(k8s):
    out = kubectl(k8s, "get", "nodes", "-o", "json")
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert len(items) == 3
    for node in items:
        assert node["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] == "general"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"


def test_kubectl_rollout_status(k8s):
    out = kubectl(k8s, "rollout", "status", "deployment/minibot", "-n", "ag-botkit", "--timeout=20s")
    assert out.returncode == 0, out.stderr
    assert "successfully rolled out" in out.stdout


def test_kubectl_apply_secret_and_exec(k8s):
    made = kubectl(k8s, "create", "secret", "generic", "kubectl-made", "-n", "default", "--from-literal=k=v",
                   "--dry-run=client", "-o", "yaml")
    out = kubectl(k8s, "apply", "--validate=false", "-f", "-", stdin=made.stdout)
    assert out.returncode == 0, out.stderr
    got = kubectl(k8s, "get", "secret", "kubectl-made", "-n", "default", "-o", "jsonpath={.data.k}")
    assert got.stdout == "dg=="  # base64("v")
    ex = kubectl(k8s, "exec", "timescaledb-0", "-n", "ag-botkit", "--", "sh", "-c",
                 'echo "$PGHOST:$PGPORT/$PGDATABASE"; pwd; echo oops >&2; exit 4')
    assert ex.returncode == 4, ex.stderr
    assert ex.stdout.splitlines() == [f"127.0.0.1:{k8s['pg_port']}/ag_botkit", str(k8s["lab_dir"].resolve())]
    assert "oops" in ex.stderr
    cat = kubectl(k8s, "exec", "-i", "timescaledb-0", "-n", "ag-botkit", "--", "cat", stdin="through stdin\n")
    assert cat.returncode == 0 and cat.stdout == "through stdin\n"


def test_exec_reaches_lab_postgres(k8s):
    if shutil.which("psql") is None or not (LAB_DIR / "secrets.json").exists():
        pytest.skip("psql or the lab's secrets are not here")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", k8s["pg_port"])) != 0:
            pytest.skip("the lab's PostgreSQL is not running")
    # host, port, user and password all come from the pod's env; the maintenance db always exists
    out = kubectl(k8s, "exec", "timescaledb-0", "-n", "ag-botkit", "--", "psql", "-d", "postgres", "-Atc",
                  "select current_user")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "agbot"


def test_smoke_playbook(k8s):
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-e",
           f"ansible_python_interpreter={sys.executable}", str(PLAYBOOK)]
    out = subprocess.run(cmd, cwd=ROOT, env=k8s["env"], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "failed=0" in out.stdout


def test_python_client_watch_and_delete_collection(k8s):
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(k8s["kubeconfig"]), context="lab"))
    ns = "watch-test"
    api.create_namespace({"metadata": {"name": ns}})
    try:
        for i in range(3):
            api.create_namespaced_config_map(ns, {"metadata": {"name": f"cm{i}", "labels": {"batch": "x"}},
                                                  "data": {"i": str(i)}})
        seen = []
        for event in watch.Watch().stream(api.list_namespaced_config_map, ns, timeout_seconds=2):
            seen.append((event["type"], event["object"].metadata.name))
        assert sorted(seen) == [("ADDED", "cm0"), ("ADDED", "cm1"), ("ADDED", "cm2")]
        listing = api.list_namespaced_config_map(ns)
        assert listing.metadata.resource_version
        api.delete_collection_namespaced_config_map(ns, label_selector="batch=x")
        assert api.list_namespaced_config_map(ns).items == []
        with pytest.raises(client.ApiException) as err:
            api.create_namespace({"metadata": {"name": ns}})
        assert err.value.status == 409
    finally:
        api.delete_namespace(ns)


def test_node_notready_fault(k8s, k8s_fault):
    assert set(nodes_ready(k8s).values()) == {"True"}
    victim = sorted(nodes_ready(k8s))[0]
    k8s_fault("k8s.node_notready", {"nodes": [victim]})
    states = nodes_ready(k8s)
    assert states[victim] == "Unknown"
    assert [s for n, s in states.items() if n != victim] == ["True", "True"]
    (k8s["lab_dir"] / "faults" / "k8s.node_notready").write_text("{}")  # all nodes
    assert set(nodes_ready(k8s).values()) == {"Unknown"}
    (k8s["lab_dir"] / "faults" / "k8s.node_notready").unlink()
    assert set(nodes_ready(k8s).values()) == {"True"}


def test_rollout_stuck_fault(k8s, k8s_fault):
    k8s_fault("k8s.rollout_stuck", {"deployments": ["stuck-app"]})
    manifest = json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "stuck-app", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "stuck-app"}},
                 "template": {"metadata": {"labels": {"app": "stuck-app"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    out = kubectl(k8s, "apply", "--validate=false", "-f", "-", stdin=manifest)
    assert out.returncode == 0, out.stderr
    stuck = kubectl(k8s, "rollout", "status", "deployment/stuck-app", "--timeout=3s")
    assert stuck.returncode != 0
    (k8s["lab_dir"] / "faults" / "k8s.rollout_stuck").unlink()
    done = kubectl(k8s, "rollout", "status", "deployment/stuck-app", "--timeout=20s")
    assert done.returncode == 0, done.stderr
    assert kubectl(k8s, "delete", "deployment", "stuck-app").returncode == 0


def test_api_error_fault(k8s, k8s_fault):
    k8s_fault("k8s.api_error")
    status, body = get_json(k8s, "/api/v1/namespaces")
    assert status == 500 and body["kind"] == "Status"
    assert kubectl(k8s, "get", "ns").returncode != 0
    assert _ready(k8s["port"])  # the readiness probe is not part of the API


def test_dr_cluster_is_independent(k8s):
    assert len(nodes_ready(k8s, "lab-dr")) == 3
    assert set(nodes_ready(k8s, "lab-dr")).isdisjoint(nodes_ready(k8s, "lab"))
    if k8s["own"]:  # a lab that ran the failover drill has ag-botkit on the DR cluster too
        assert kubectl(k8s, "--context", "lab-dr", "get", "ns", "ag-botkit").returncode != 0
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "dr-only", "namespace": "default"}, "data": {"a": "b"}})
    out = kubectl(k8s, "--context", "lab-dr", "apply", "--validate=false", "-f", "-", stdin=cm)
    assert out.returncode == 0, out.stderr
    assert kubectl(k8s, "--context", "lab-dr", "get", "cm", "dr-only").returncode == 0
    assert kubectl(k8s, "--context", "lab", "get", "cm", "dr-only").returncode != 0
    status, _ = get_json(k8s, "/clusters/some-other-cluster/api/v1/namespaces/default/configmaps/dr-only")
    assert status == 404

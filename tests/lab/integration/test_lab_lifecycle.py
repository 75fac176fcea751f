"""The lab's own contract: up is idempotent and fast, down leaves nothing running, bad input is clear.

Runs a second, private lab (its own LAB_DIR and ports) so the shared lab of the test session is untouched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PY = str(ROOT / ".venv" / "bin" / "python")
PORT_VARS = ("LAB_PG_PORT", "LAB_AWS_PORT", "LAB_AWS_TLS_PORT", "LAB_K8S_PORT", "LAB_MINIBOT_PORT", "LAB_RTDS_PORT",
             "LAB_SINK_PORT", "LAB_SMTP_PORT")


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def private_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "PG", "AWS_"))}
    env["LAB_DIR"] = str(lab_dir)
    env.update(zip(PORT_VARS, map(str, free_ports(len(PORT_VARS))), strict=True))

    def labctl(*args, timeout=120):
        return subprocess.run([PY, str(ROOT / "dev/lab/labctl.py"), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    yield labctl, lab_dir, env
    labctl("down")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def lab_pids(lab_dir: Path) -> list[int]:
    pids = [int(p.read_text().split()[0]) for p in (lab_dir / "pids").glob("*.pid")]
    pg = lab_dir / "pg" / "data" / "postmaster.pid"
    if pg.exists():
        pids.append(int(pg.read_text().split()[0]))
    return pids


def test_up_status_down_leaves_nothing_running(private_lab):
    labctl, lab_dir, _env = private_lab
    t0 = time.monotonic()
    up = labctl("up")
    elapsed = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    assert "lab ready in" in up.stdout
    assert elapsed < 60, f"lab-up took {elapsed:.1f}s"
    pids = lab_pids(lab_dir)
    assert len(pids) == 6 and all(alive(p) for p in pids)
    status = labctl("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(" up ") == 7   # six processes, and the AWS server's TLS listener (aws-tls)
    tls_port = int(_env["LAB_AWS_TLS_PORT"])
    assert f"aws-tls    up    port {tls_port}" in status.stdout, status.stdout
    assert f'export LAB_CA_FILE="{lab_dir}/tls/ca.pem"' in (lab_dir / "env").read_text()
    # up again: idempotent, same processes
    again = labctl("up")
    assert again.returncode == 0, again.stderr
    assert sorted(lab_pids(lab_dir)) == sorted(pids)
    down = labctl("down")
    assert down.returncode == 0
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)], "lab-down left processes running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", tls_port)) != 0, "the TLS listener still answers after lab-down"
    assert labctl("status").returncode == 1


def test_down_with_nothing_up_is_quiet(private_lab):
    labctl, _lab_dir, _env = private_lab
    res = labctl("down")
    assert res.returncode == 0
    assert res.stdout == "" and res.stderr == ""


def test_port_in_use_names_the_port_and_starts_nothing(private_lab):
    labctl, lab_dir, env = private_lab
    taken = int(env["LAB_MINIBOT_PORT"])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", taken))
        s.listen(1)
        res = labctl("up")
    assert res.returncode == 2
    assert f"port {taken}" in res.stderr and "LAB_MINIBOT_PORT" in res.stderr
    assert not (lab_dir / "pids").exists() or not list((lab_dir / "pids").glob("*.pid"))
    assert not (lab_dir / "pg" / "data" / "postmaster.pid").exists()


def test_missing_prerequisite_says_what_to_install(private_lab, tmp_path):
    labctl, _lab_dir, env = private_lab
    env["LAB_PG_BIN"] = str(tmp_path / "no-postgres-here")
    res = labctl("up")
    assert res.returncode == 2
    assert "PostgreSQL 15 server binaries are missing" in res.stderr and "apt-get install" in res.stderr


def test_fault_cli_round_trip(private_lab):
    labctl, lab_dir, _env = private_lab
    assert labctl("fault", "on", "minibot.slow", "--options", '{"seconds": 3}').returncode == 0
    assert json.loads((lab_dir / "faults" / "minibot.slow").read_text()) == {"seconds": 3}
    listing = labctl("fault", "list").stdout
    assert "ON  minibot.slow" in listing
    assert labctl("fault", "off", "--all").returncode == 0
    assert not (lab_dir / "faults" / "minibot.slow").exists()
    bad = labctl("fault", "on", "nope.nothing")
    assert bad.returncode == 2 and "unknown fault" in bad.stderr


def _run_pod(env: dict, name: str) -> dict:
    """A pod of a known image (rtds-client) in the private lab's DR cluster; its process's row once it runs."""
    import urllib.request

    base = f"http://127.0.0.1:{env['LAB_K8S_PORT']}/clusters/ag-botkit-dr-eks/api/v1/namespaces/default/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "ghcr.io/ag-botkit/rtds-client:1.4.2",
                                    "env": [{"name": "RTDS_URL",
                                             "value": f"ws://127.0.0.1:{env['LAB_RTDS_PORT']}/ws"}]}]}}
    req = urllib.request.Request(base, data=json.dumps(pod).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
    listing = Path(env["LAB_DIR"]) / "k8s" / "processes.json"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = json.loads(listing.read_text()) if listing.exists() else []
        row = next((r for r in rows if r["pod"] == name), None)
        if row and alive(row["pid"]):
            return row
        time.sleep(0.2)
    pytest.fail(f"pod {name} did not run within 15 s")


def _gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not alive(pid)


def test_down_stops_pod_processes_even_when_the_emulator_died(private_lab):
    labctl, lab_dir, env = private_lab
    assert labctl("up").returncode == 0
    first = _run_pod(env, "first")
    status = labctl("status")
    assert f"pid {first['pid']}" in status.stdout and "ag-botkit-dr-eks/default/first" in status.stdout
    assert labctl("down").returncode == 0
    assert _gone(first["pid"]), "make lab-down left a pod's process running"
    # an emulator killed without its SIGTERM handler leaves its pods running: labctl down stops them
    assert labctl("up").returncode == 0
    second = _run_pod(env, "second")
    k8s_pid = int((lab_dir / "pids" / "k8s.pid").read_text().split()[0])
    os.kill(k8s_pid, 9)
    assert _gone(k8s_pid, 5) and alive(second["pid"])
    down = labctl("down")
    assert down.returncode == 0 and "pod process(es) the emulator left" in down.stdout
    assert _gone(second["pid"]), "make lab-down left a dead emulator's pod process running"

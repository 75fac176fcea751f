"""The recovery level of a Kubernetes cluster failure (plugins/filter/cluster_diagnosis.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cluster_diagnosis", ROOT / "plugins/filter/cluster_diagnosis.py")
cd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cd)

OK = {"status": 200, "content": "[+]ping ok\n[+]etcd ok\nreadyz check passed"}
BAD = {"status": 500, "content": "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed"}


def node(name, ready="True", iid="i-0abc", **pressure):
    conds = [{"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown"}]
    conds += [{"type": t, "status": "True"} for t, on in pressure.items() if on]
    return {"metadata": {"name": name}, "spec": {"providerID": f"aws:///us-east-1a/{iid}" if iid else ""},
            "status": {"conditions": conds}}


def pod(name, node_name, ready=True, phase="Running", waiting=None):
    cs = {"name": "c", "ready": ready, "state": {"waiting": {"reason": waiting, "message": "back-off"}} if waiting
                                                 else {"running": {}}}
    return {"metadata": {"name": name}, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "containerStatuses": [cs],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def diag(nodes, pods=(), readyz=OK, livez=OK, **kw):
    return cd.cluster_diagnosis(list(nodes), pods=list(pods), readyz=readyz, livez={"status": 200, "content": "ok"}
                                if livez is OK else livez, **kw)


def test_healthy_is_none():
    d = diag([node("a"), node("b")], [pod("p", "a")])
    assert (d["level"], d["kind"]) == ("none", "healthy")
    assert "deprecated since Kubernetes 1.19" in d["reasons"][0]


def test_not_ready_node_is_reboot_with_its_instance():
    d = diag([node("a"), node("b", ready="Unknown", iid="i-0b")], [pod("p", "b", ready=False, waiting="NodeNotReady")])
    assert (d["level"], d["kind"]) == ("reboot", "node")
    assert d["not_ready_nodes"] == [{"name": "b", "instance_id": "i-0b", "availability_zone": "us-east-1a",
                                     "provider_id": "aws:///us-east-1a/i-0b",
                                     "reason": d["not_ready_nodes"][0]["reason"]}]
    assert d["failing_pods"][0]["node_ready"] is False


def test_pressure_counts_as_not_ready():
    d = diag([node("a", DiskPressure=True)])
    assert d["level"] == "reboot" and "DiskPressure true" in d["not_ready_nodes"][0]["reason"]


@pytest.mark.parametrize(("attempted", "level"), [(["reboot"], "nodegroup_update"),
                                                  (["reboot", "nodegroup_update"], "rebuild")])
def test_escalation_after_an_attempt(attempted, level):
    assert diag([node("b", ready="False")], attempted=attempted)["level"] == level


def test_unmapped_node_goes_to_nodegroup_update():
    assert diag([node("b", ready="False", iid="")])["level"] == "nodegroup_update"


def test_crash_loop_on_ready_node_is_application_problem():
    d = diag([node("a")], [pod("p", "a", ready=False, waiting="CrashLoopBackOff")])
    assert (d["level"], d["kind"]) == ("none", "application")
    assert "application problem" in d["reasons"][-1] and d["failing_pods"][0]["reason"] == "CrashLoopBackOff"


def test_readyz_failing_is_rebuild_even_with_ready_nodes():
    d = diag([node("a")], readyz=BAD)
    assert (d["level"], d["kind"]) == ("rebuild", "control_plane")
    assert d["control_plane"]["failed_checks"] == ["etcd"]


@pytest.mark.parametrize("kw", [{"livez": {"status": 500, "content": "[-]etcd failed"}},
                                {"readyz": {"status": -1, "content": ""}},
                                {"cluster_status": "FAILED"}, {"api_error": "connection refused"}])
def test_other_control_plane_failures_are_rebuild(kw):
    assert diag([node("a")], **kw)["level"] == "rebuild"


def test_control_plane_wins_over_nodes():
    assert diag([node("b", ready="False")], readyz=BAD)["kind"] == "control_plane"


def test_completed_pods_are_fine_and_bad_input_refused():
    assert diag([node("a")], [pod("job", "a", ready=False, phase="Succeeded")])["kind"] == "healthy"
    with pytest.raises(cd.DiagnosisError):
        cd.cluster_diagnosis({"not": "a list"})
    with pytest.raises(cd.DiagnosisError):
        diag([node("a")], attempted=["reinstall"])

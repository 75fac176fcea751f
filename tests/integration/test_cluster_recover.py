"""playbooks/cluster_recover.yml (DR plan §3) against the lab: one test per fault, each asserting the level chosen
and that nothing above it ran; check mode changes nothing; a rebuild never starts when the backup failed.

The bot (deploy/k8s, a pod that runs) is deployed once per module into namespace ag-botkit-cr of the production
cluster; each test breaks what it needs and leaves the cluster healthy. Evidence comes from the lab itself: the
AWS server's record of reboots, node group updates and cluster deletes (.lab/k8s/aws_events.jsonl), EKS
ListUpdates, the emulator's nodes and the bot's /health through the API server's service proxy.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from runbook_checks import forget_run, run_state, seed_run, slack_messages, state_path

ROOT = Path(__file__).resolve().parents[2]
NS = "ag-botkit-cr"
CLUSTER = "ag-botkit-production-eks"
BASE_VARS = {"dr_incident_enabled": False, "eks_recover_namespace": NS, "eks_recover_poll_interval": 1,
             "eks_recover_verify_timeout": 90, "eks_recover_node_ready_timeout": 60}


def _out(proc) -> str:
    return proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def k8s(lab):
    base = f"http://127.0.0.1:{lab['ports']['k8s']}"

    def call(path: str, method: str = "GET", body: dict | None = None, ctype: str = "application/merge-patch+json"):
        req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text.startswith("{") else text)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    return call


@pytest.fixture(scope="module")
def eks(lab):
    return boto3.client("eks", region_name="us-east-1", endpoint_url=lab["env"]["AWS_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def app(run_playbook, k8s):
    """The bot running as pods in NS (deployed once for the module), removed at the end."""
    proc = run_playbook("tests/integration/playbooks/cluster_recover_app.yml",
                        extra_vars={"cr_namespace": NS, "app_deploy_rollout_timeout": 120})
    assert proc.returncode == 0, _out(proc)
    yield NS
    k8s(f"/api/v1/namespaces/{NS}", "DELETE")


def events(lab) -> list[dict]:
    path = Path(lab["lab_dir"]) / "k8s" / "aws_events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def node_of_bot(k8s) -> str:
    _, pods = k8s(f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dminibot")
    return pods["items"][0]["spec"]["nodeName"]


def node(k8s, name: str) -> dict:
    return k8s(f"/api/v1/nodes/{name}")[1]


def ready(n: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])


def health(k8s) -> int:
    return k8s(f"/api/v1/namespaces/{NS}/services/minibot:http/proxy/health")[0]


def ng_updates(eks) -> list[str]:
    return eks.list_updates(name=CLUSTER, nodegroupName="general")["updateIds"]


def instance_of(n: dict) -> str:
    return n["spec"]["providerID"].rsplit("/", 1)[-1]


def since(lab, t0: float) -> list[dict]:
    return [e for e in events(lab) if e["at"] >= t0]


def wait_healthy(k8s, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if health(k8s) == 200:
            return
        time.sleep(1)
    raise AssertionError("the bot did not serve again")


def test_check_mode_changes_nothing(app, run_playbook, fault, lab, k8s, eks):
    name = node_of_bot(k8s)
    fault("k8s.node_failure", {"nodes": [name]})
    updates, t0 = ng_updates(eks), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml", "--check", extra_vars=BASE_VARS)
    assert proc.returncode == 0, _out(proc)
    assert "level reboot (node); would run: cordon, drain, reboot" in " ".join(proc.stdout.split())
    assert since(lab, t0) == []                       # no reboot, no node group update, no cluster change
    assert ng_updates(eks) == updates                 # EKS: no update
    n = node(k8s, name)
    assert not ready(n) and not n["spec"].get("unschedulable")   # emulator: not cordoned, still down
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=lab["env"]["AWS_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    state = ec2.describe_instances(InstanceIds=[instance_of(n)])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_reboot_fixes_a_not_ready_node(app, run_playbook, fault, lab, k8s, eks):
    name = node_of_bot(k8s)
    fault("k8s.node_failure", {"nodes": [name], "recovers_on": "reboot"})
    time.sleep(1)
    assert health(k8s) != 200                          # the bot's pod is down with its node
    updates, t0 = ng_updates(eks), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars=BASE_VARS)
    assert proc.returncode == 0, _out(proc)
    done = since(lab, t0)
    n = node(k8s, name)
    assert [e["kind"] for e in done] == ["reboot"] and done[0]["instances"] == [instance_of(n)]
    assert ng_updates(eks) == updates                  # nothing above reboot ran
    assert ready(n) and not n["spec"].get("unschedulable")
    assert health(k8s) == 200
    assert "'level: reboot (node)'" in proc.stdout


def test_node_staying_not_ready_gets_the_node_group_update(app, run_playbook, fault, lab, k8s, eks):
    name = node_of_bot(k8s)
    fault("k8s.node_failure", {"nodes": [name], "recovers_on": "nodegroup_update"})
    updates, t0 = ng_updates(eks), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml",
                        extra_vars={**BASE_VARS, "eks_recover_node_ready_timeout": 6})
    assert proc.returncode == 0, _out(proc)
    kinds = [e["kind"] for e in since(lab, t0)]
    assert kinds == ["reboot", "nodegroup_update"]     # reboot first, then the update; no cluster delete
    new = [u for u in ng_updates(eks) if u not in updates]
    assert len(new) == 1
    upd = eks.describe_update(name=CLUSTER, updateId=new[0], nodegroupName="general")["update"]
    assert {"type": "Force", "value": "true"} in upd["params"] and upd["status"] == "Successful"
    n = node(k8s, name)
    assert ready(n) and not n["spec"].get("unschedulable")
    wait_healthy(k8s)


def test_crash_loop_on_a_healthy_node_is_an_application_problem(app, run_playbook, lab, k8s, eks):
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "minibot", "env": [{"name": "LAB_LOG_LEVEL", "value": "NO-SUCH-LEVEL"}]}]}}}}
    k8s(f"/apis/apps/v1/namespaces/{NS}/deployments/minibot", "PATCH", patch,
        "application/strategic-merge-patch+json")
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            _, pods = k8s(f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dminibot")
            if any((cs.get("restartCount") or 0) > 0 for p in pods["items"]
                   for cs in p["status"].get("containerStatuses") or []):
                break
            time.sleep(1)
        updates, t0 = ng_updates(eks), time.time()
        proc = run_playbook("playbooks/cluster_recover.yml",
                            extra_vars={**BASE_VARS, "eks_recover_verify_timeout": 5})
        out = " ".join(proc.stdout.split())
        assert proc.returncode != 0, _out(proc)          # not recovered: the application must be fixed
        assert "'level: none (application)'" in out and "an application problem, no node action helps" in out
        assert since(lab, t0) == [] and ng_updates(eks) == updates   # no reboot, no node group update
    finally:
        patch["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "LAB_LOG_LEVEL", "$patch": "delete"}]
        k8s(f"/apis/apps/v1/namespaces/{NS}/deployments/minibot", "PATCH", patch,
            "application/strategic-merge-patch+json")
        wait_healthy(k8s, 90)


# ---------------------------------------------------------------------------------------------------- rebuild
CR = "ag-botkit-cr-eks"   # a cluster Terraform manages (workspace crtest), so a rebuild can destroy and apply it


@pytest.fixture(scope="module")
def tf_cluster(run_playbook, lab, k8s):
    """Cluster ag-botkit-cr-eks from infra/terraform (workspace crtest) with the bot deployed; destroyed after."""
    proc = run_playbook("tests/integration/playbooks/cluster_recover_tf.yml")
    assert proc.returncode == 0, _out(proc)
    endpoint = f"http://127.0.0.1:{lab['ports']['k8s']}/clusters/{CR}"
    proc = run_playbook("tests/integration/playbooks/cluster_recover_app.yml", extra_vars={
        "cr_cluster": CR, "cr_endpoint": endpoint, "cr_namespace": "ag-botkit", "app_deploy_region": "us-west-2",
        "app_deploy_rollout_timeout": 120})
    assert proc.returncode == 0, _out(proc)
    yield {
        "dr_incident_enabled": False, "eks_recover_cluster_name": CR, "eks_recover_region": "us-west-2",
        "eks_recover_kubeconfig": f"{lab['lab_dir']}/cluster_recover/kubeconfig-{CR}", "eks_recover_context": "",
        "eks_recover_namespace": "ag-botkit", "eks_recover_poll_interval": 1, "eks_recover_verify_timeout": 120,
        "eks_recover_terraform_workspace": "crtest",
        "eks_recover_terraform_state_dir": f"{lab['lab_dir']}/terraform_cr",
        "eks_recover_terraform_variables": {"name_prefix": "ag-botkit-cr", "eks_cluster_policy_arns": [],
                                            "eks_node_policy_arns": []},
        "eks_recover_cluster_endpoint": endpoint}
    run_playbook("tests/integration/playbooks/cluster_recover_tf.yml", extra_vars={"cr_tf_state": "absent"})
    k8s(f"/clusters/{CR}/api/v1/namespaces/ag-botkit", "DELETE")


def _cr_cluster(lab) -> dict:
    eks = boto3.client("eks", region_name="us-west-2", endpoint_url=lab["env"]["AWS_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return eks.describe_cluster(name=CR)["cluster"]


def test_rebuild_never_starts_without_confirmation_or_when_the_backup_failed(tf_cluster, run_playbook, fault, lab):
    fault("k8s.control_plane", {"clusters": [CR]})
    before, t0 = _cr_cluster(lab), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars=tf_cluster)
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0 and f"re-run with -e eks_recover_confirm_rebuild={CR}" in out, _out(proc)
    assert "'level: rebuild (control_plane)'" in out and "[-]etcd" not in out   # reasons name the failing check
    assert "failing: etcd" in out
    fault("aws.error", {"service": "s3"})   # every S3 call: the upload (and any read-back) fails
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars={**tf_cluster, "eks_recover_confirm_rebuild": CR})
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0 and "did not verify" in out and "was NOT destroyed" in out, _out(proc)
    assert [e for e in since(lab, t0) if e.get("cluster") == CR] == []   # no delete, no create
    assert _cr_cluster(lab)["createdAt"] == before["createdAt"]


# The runbook gate before the rebuild (roles/runbook gate, docs/runbook.md): whatever tags a tired engineer gives, with
# the confirmation given too, nothing is rebuilt unless this run's own diagnosis asks for it. Each run stops at the gate
# (a few seconds); the cluster is healthy, so the diagnosis asks for nothing. Placed between the two rebuild tests,
# which share tf_cluster: the cluster would be destroyed if the gate let a run through.
REBUILD_GATE = "the rebuild was not done: this run ({}) has no passing diagnose step recorded"
TAGS_NEVER_OPEN = "tags alone never open this gate"


def _backups(lab) -> list[str]:
    """The rebuild's first act: the namespace backup in S3 (s3://ag-botkit-backups/kubernetes/k8s-backup-*.yaml)."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=lab["env"]["AWS_URL"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="ag-botkit-backups", Prefix="kubernetes/")
                  .get("Contents", []))


def _nothing_rebuilt(lab, t0: float, created_before, backups_before) -> None:
    assert [e for e in since(lab, t0) if e.get("cluster") == CR] == []   # no cluster delete or create
    assert _cr_cluster(lab)["createdAt"] == created_before
    assert _backups(lab) == backups_before                                # not even the backup began


@pytest.mark.parametrize("tags", [["--tags", "rebuild"], ["--skip-tags", "diagnose"],
                                  ["--tags", "rebuild", "--skip-tags", "always"]],
                         ids=["tags-rebuild", "skip-diagnose", "tags-rebuild-skip-always"])
def test_rebuild_gate_refuses_tags_that_jump_to_the_rebuild(tf_cluster, run_playbook, lab, tags):
    forget_run(lab, f"cluster_recover-{CR}")
    created, backups, t0 = _cr_cluster(lab)["createdAt"], _backups(lab), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml", *tags,
                        extra_vars={**tf_cluster, "eks_recover_confirm_rebuild": CR})
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, _out(proc)
    # --skip-tags always skips the declaration (no run, so "?") and the rescue, never the gate
    incident = run_state(lab, f"cluster_recover-{CR}")["incident_id"] if "always" not in tags else "?"
    assert REBUILD_GATE.format(incident) in out and TAGS_NEVER_OPEN in out, _out(proc)
    reason = "level none (healthy)" if tags == ["--tags", "rebuild"] else "not diagnosed in this run"
    assert f"results not ok: diagnosis of {CR} asks for a rebuild: {reason}" in out
    _nothing_rebuilt(lab, t0, created, backups)


def test_rebuild_gate_accepts_no_diagnosis_recorded_by_another_run_or_cluster(tf_cluster, run_playbook, lab):
    """The run state records that a diagnose step was done, never what it found: a previous run's record (this
    cluster's failed run, which a re-run resumes) or another cluster's (its own state file) never opens the gate."""
    other = f"cluster_recover-{CLUSTER}"
    saved = state_path(lab, other).read_text() if state_path(lab, other).exists() else None
    now = time.time()
    try:
        # another cluster's failed run that diagnosed and recovered; this cluster has no run yet
        seed_run(lab, other, "INC-CR-OTHER-CLUSTER", ["diagnose", "recovery"], now)
        forget_run(lab, f"cluster_recover-{CR}")
        created, backups, t0 = _cr_cluster(lab)["createdAt"], _backups(lab), time.time()
        proc = run_playbook("playbooks/cluster_recover.yml", "--tags", "rebuild", "--skip-tags", "diagnose",
                            extra_vars={**tf_cluster, "eks_recover_confirm_rebuild": CR})
        out = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0, _out(proc)
        mine = run_state(lab, f"cluster_recover-{CR}")["incident_id"]
        assert mine != "INC-CR-OTHER-CLUSTER" and REBUILD_GATE.format(mine) in out, _out(proc)
        assert "(steps done: none;" in out
        _nothing_rebuilt(lab, t0, created, backups)

        # this cluster's previous run diagnosed (a rebuild, say) and failed: the re-run resumes it, yet without its
        # own diagnosis the gate refuses
        seed_run(lab, f"cluster_recover-{CR}", "INC-CR-PREVIOUS-RUN", ["diagnose", "recovery"], now)
        t0 = time.time()
        proc = run_playbook("playbooks/cluster_recover.yml", "--tags", "rebuild", "--skip-tags", "diagnose",
                            extra_vars={**tf_cluster, "eks_recover_confirm_rebuild": CR})
        out = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0, _out(proc)
        assert "Resuming INC-CR-PREVIOUS-RUN" in out
        assert REBUILD_GATE.format("INC-CR-PREVIOUS-RUN") in out and "(steps done: diagnose, recovery;" in out, \
            _out(proc)
        assert "asks for a rebuild: not diagnosed in this run" in out
        _nothing_rebuilt(lab, t0, created, backups)
    finally:
        forget_run(lab, f"cluster_recover-{CR}")
        if saved is None:
            forget_run(lab, other)
        else:
            state_path(lab, other).write_text(saved)


def test_rebuild_recovers_a_failed_control_plane(tf_cluster, run_playbook, fault, lab, k8s):
    fault("k8s.control_plane", {"clusters": [CR]})
    assert k8s(f"/clusters/{CR}/readyz")[0] == 500
    before, t0 = _cr_cluster(lab), time.time()
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars={**tf_cluster, "eks_recover_confirm_rebuild": CR})
    assert proc.returncode == 0, _out(proc)
    kinds = [e["kind"] for e in since(lab, t0)]
    assert kinds == ["cluster_deleted", "cluster_created"]              # the rebuild, nothing else
    assert _cr_cluster(lab)["createdAt"] != before["createdAt"]
    assert k8s(f"/clusters/{CR}/readyz")[0] == 200
    assert k8s(f"/clusters/{CR}/api/v1/namespaces/ag-botkit/services/minibot:http/proxy/health")[0] == 200


# ---------------------------------------------------------------------------------------------------- runbook
def test_failed_step_notifies_and_a_rerun_resumes(app, run_playbook, fault, lab, k8s, eks):
    """roles/runbook: a step that fails marks the run failed and notifies the incident's channels, naming the step; the
    same command again resumes that run (same incident) and completes it. The failure is the cheapest refusal there is
    (a diagnosis above eks_recover_max_level, nothing changed); once the node is back the re-run has nothing to do."""
    forget_run(lab, f"cluster_recover-{CLUSTER}")
    name = node_of_bot(k8s)
    fault("k8s.node_failure", {"nodes": [name]})
    updates, t0 = ng_updates(eks), time.time()
    extra = {**BASE_VARS, "dr_incident_enabled": True}
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars={**extra, "eks_recover_max_level": "none"})
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0, _out(proc)
    stopped = "Cluster recovery stopped in step diagnose: The diagnosis asks for reboot but eks_recover_max_level is"
    assert stopped in out, _out(proc)
    assert since(lab, t0) == [] and ng_updates(eks) == updates        # the refusal changed nothing
    state = run_state(lab, f"cluster_recover-{CLUSTER}")
    assert state["status"] == "failed" and state["completed"] == []
    failed = [m for m in slack_messages(lab, state["incident_id"]) if "FAILED in step diagnose" in m]
    assert failed and "eks_recover_max_level is none" in failed[0] and "level reboot (node)" in failed[0]

    (Path(lab["lab_dir"]) / "faults" / "k8s.node_failure").unlink()   # the node comes back by itself
    wait_healthy(k8s, 90)
    proc = run_playbook("playbooks/cluster_recover.yml", extra_vars=extra)
    assert proc.returncode == 0, _out(proc)
    assert f"Resuming {state['incident_id']}" in " ".join(proc.stdout.split())
    after = run_state(lab, f"cluster_recover-{CLUSTER}")
    assert after["status"] == "completed" and after["incident_id"] == state["incident_id"]
    assert after["declared_at"] == state["declared_at"]                # RTO counts from the first attempt
    assert after["completed"] == ["diagnose", "recovery", "verify"]    # no rebuild: the diagnosis never asked for one
    assert since(lab, t0) == [] and ng_updates(eks) == updates

"""Region failover (playbooks/region_failover.yml) against the lab: the faults of issue 4.

The module starts from and leaves the lab as seeded: dev/playbooks/failback_lab.yml (DNS back on the primary, DR
namespace/database/Terraform workspace removed, run state forgotten, then the lab's nightly backup and snapshot copy)
runs once before the first test and once after the last. Between tests it runs only when a test needs a clean lab and
the previous one left something behind (a failback costs minutes): check mode and a preflight stop change nothing.
A test that deletes the DR snapshot copies puts them back with dev/lab/aws_faults.py restore-snapshots.
A fault that an earlier step would legitimately catch is turned on as the step under test starts
(failover_faults.run_with_fault_at), so the test still proves that step's check.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
from failover_faults import run_with_fault_at

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = "playbooks/region_failover.yml"
FAILBACK = "dev/playbooks/failback_lab.yml"
RECOVERY = "us-west-2"
TARGET_DB = "ag-botkit-dr-timescaledb"
RECORD = "api.ag-botkit.example.com."
# the lab's inventory; a developer running a private lab elsewhere may point this at a copy of it
INVENTORY = os.environ.get("REGION_FAILOVER_INVENTORY", "inventories/lab")
FAST = {"app_deploy_rollout_timeout": 8, "dr_verify_monitor_duration": 1}
# a run that must get past the rollout check: wait longer for pods that a previous test's fault held back (the wait
# ends as soon as every deployment is available)
PAST_ROLLOUT = {**FAST, "app_deploy_rollout_timeout": 45}


def _out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture
def aws(lab):
    def client(service: str, region: str = "us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=lab["env"]["AWS_URL"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


def _failback(run_playbook) -> None:
    proc = run_playbook(FAILBACK, inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]


@pytest.fixture(scope="module", autouse=True)
def seeded_lab(run_playbook):
    """The lab as seeded, once for the module, and again after it."""
    _failback(run_playbook)
    yield
    _failback(run_playbook)


@pytest.fixture
def clean_lab(run_playbook, aws, lab):
    """A lab with no trace of a failover: resets it only if the previous test left one."""
    state = Path(lab["lab_dir"]) / "region_failover" / "region_failover.json"
    if state.exists() or _dr_db(aws) is not None or _tf_resources(lab) or _dns_answer(aws) != _seeded_answer(lab):
        _failback(run_playbook)


def _seeded_answer(lab) -> str:
    return json.loads((Path(lab["lab_dir"]) / "aws_seed.json").read_text())["route53"]["primary_target"]


def _dns_answer(aws) -> str:
    r53 = aws("route53")
    zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "ag-botkit.example.com."][0]
    sets = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    primary = [s for s in sets if s["Name"] == RECORD and s.get("Failover") == "PRIMARY"][0]
    return primary["ResourceRecords"][0]["Value"]


def _dr_db(aws) -> dict | None:
    rds = aws("rds", RECOVERY)
    dbs = [d for d in rds.describe_db_instances()["DBInstances"] if d["DBInstanceIdentifier"] == TARGET_DB]
    return dbs[0] if dbs else None


def _tf_resources(lab) -> list[str]:
    state = Path(lab["lab_dir"]) / "terraform" / "terraform.tfstate.d" / "dr" / "terraform.tfstate"
    if not state.exists():
        return []
    return sorted(f"{r['type']}.{r['name']}" for r in json.loads(state.read_text()).get("resources", [])
                  if r.get("mode") == "managed")


def _deployments(lab_env, lab) -> dict:
    kubeconfig = Path(lab["lab_dir"]) / "region_failover" / "kubeconfig-ag-botkit-dr-eks"
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", "ag-botkit", "get", "deployments",
                           "-o", "json"], env=lab_env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return {d["metadata"]["name"]: (d["status"].get("availableReplicas", 0), d["spec"]["replicas"])
            for d in json.loads(proc.stdout)["items"]}


def _end_state(aws, lab, lab_env) -> dict:
    db = _dr_db(aws)
    return {"dns": _dns_answer(aws), "db": db and (db["DBInstanceStatus"], db["DBSubnetGroup"]["DBSubnetGroupName"]),
            "terraform": _tf_resources(lab), "deployments": _deployments(lab_env, lab)}


def _aws_faults(lab_env, *args: str) -> None:
    proc = subprocess.run([str(ROOT / ".venv/bin/python"), "dev/lab/aws_faults.py", *args], cwd=ROOT, env=lab_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_mode_changes_nothing(clean_lab, run_playbook, aws, lab):
    before = _dns_answer(aws)
    proc = run_playbook(PLAYBOOK, "--check", inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]
    assert "Terraform dr: Plan:" in _out(proc)
    assert _dns_answer(aws) == before
    assert _dr_db(aws) is None
    assert _tf_resources(lab) == []


def test_no_snapshot_in_recovery_region_stops_in_preflight(clean_lab, run_playbook, aws, lab, lab_env):
    primary = _dns_answer(aws)
    _aws_faults(lab_env, "delete-snapshots", "--region", RECOVERY)
    try:
        proc = run_playbook(PLAYBOOK, extra_vars=FAST, inventory=INVENTORY)
    finally:
        _aws_faults(lab_env, "restore-snapshots", "--region", RECOVERY)
    out = _out(proc)
    assert proc.returncode != 0
    assert "stopped in step preflight" in out
    assert "No snapshot of ag-botkit-production-timescaledb is available in us-west-2" in out
    # nothing changed
    assert _tf_resources(lab) == []
    assert _dr_db(aws) is None
    assert _dns_answer(aws) == primary


def test_rollout_never_available_fails_at_verify_naming_it(clean_lab, run_playbook, fault, aws):
    primary = _dns_answer(aws)
    fault("k8s.rollout_stuck", {"deployments": ["rtds-client"], "clusters": ["ag-botkit-dr-eks"]})
    proc = run_playbook(PLAYBOOK, extra_vars=FAST, inventory=INVENTORY)
    out = _out(proc)
    assert proc.returncode != 0
    assert "stopped in step verify" in out
    assert "never became available in ag-botkit-dr-eks within 8 s: rtds-client" in out
    assert _dns_answer(aws) == primary, "DNS must not be flipped when verify fails"


def test_rtds_probe_failing_keeps_dns(run_playbook, aws, lab):
    """RTDS down fails the RTDS check, by name, and DNS is kept. rtds.down before the run would make the rtds-client
    pods unready and stop the run at the rollout check first, so it is turned on as the RTDS probe starts. The run
    resumes whatever the previous test left (a run failed at verify), or starts afresh: either way every step before
    the probe must pass."""
    primary = _dns_answer(aws)
    proc = run_with_fault_at(run_playbook, lab, PLAYBOOK, "Verify | Verify RTDS connectivity", "rtds.down",
                             extra_vars=PAST_ROLLOUT, inventory=INVENTORY)
    out = _out(proc)
    assert proc.returncode != 0, out[-3000:]
    assert "Region failover stopped in step verify: Failed to connect to RTDS ws://" in " ".join(out.split())
    assert "the server rejected the websocket handshake" in out, out[-3000:]
    assert _dns_answer(aws) == primary


def test_failure_midway_then_rerun_resumes_to_clean_state(run_playbook, aws, lab, lab_env):
    # a run that fails at step 5 (verify): the RTDS feed stalls as the probe starts. It resumes the run the previous
    # test left failed at verify, or starts one on a clean lab; either way it must stop at verify, with the steps
    # before it recorded as done
    proc = run_with_fault_at(run_playbook, lab, PLAYBOOK, "Verify | Verify RTDS connectivity", "rtds.stall",
                             extra_vars=PAST_ROLLOUT, inventory=INVENTORY)
    assert proc.returncode != 0
    assert "stopped in step verify" in _out(proc), _out(proc)[-3000:]
    state = json.loads((Path(lab["lab_dir"]) / "region_failover" / "region_failover.json").read_text())
    assert state["status"] == "failed"
    assert {"preflight", "infrastructure", "database", "applications"} <= set(state["completed"])

    # the same command again resumes and completes
    proc = run_playbook(PLAYBOOK, extra_vars=PAST_ROLLOUT, inventory=INVENTORY)
    out = _out(proc)
    assert proc.returncode == 0, out[-3000:]
    assert f"Resuming {state['incident_id']}" in out
    resumed = _end_state(aws, lab, lab_env)
    report = json.loads((ROOT / "reports" / state["incident_id"] / "region_failover.json").read_text())
    assert report["status"] == "completed"
    assert report["resumed"] in (True, "True", "true")
    assert report["rto_seconds"] and report["rpo_seconds"] is not None

    # reference: a clean run on a reset lab ends in the same state as the resumed one
    _failback(run_playbook)
    proc = run_playbook(PLAYBOOK, extra_vars=PAST_ROLLOUT, inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]
    assert _end_state(aws, lab, lab_env) == resumed

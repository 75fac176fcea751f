"""Every job template's playbook, run as AWX runs it: through ansible-runner (AWX's executor) with exactly the
extra vars its generated survey produces (plus the template's own extra_vars), on the lab inventory in place of the
template's. Destructive templates run in check mode, as a careful operator's first launch would.

Asserts the job succeeded, its job events (play/task starts, stats) and the evidence the incident_timeline callback
writes (timeline.json with the run's phases, report.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ansible_runner
import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.agbotkit.dr.plugins.filter.awx_job_templates import awx_job_templates  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.plugin_utils.awx import survey_extra_vars  # noqa: E402
from awx_data import config  # noqa: E402

# How each template runs here: survey answers an operator would give, check mode where it changes things,
# and the phases its timeline must show.
RUNS = {
    "DR | Incident drill": dict(answers={"incident_drill_phase_seconds": 0}, phases={"preflight", "act", "verify"}),
    "DR | Incident notify": dict(
        answers={"incident_notify_message": "AWX job test: a workflow node failed"}, phases=set()
    ),
    "DR | Kill switch": dict(answers={}, phases=set()),
    "DR | Readiness": dict(answers={"readiness_checks": ["kill_switch"]}, phases=set()),
    # a real backup is tested in test_db_restore_physical.py; here its check-mode launch
    # on a lab without a pgBackRest stanza the job must stop with the reason (test_db_restore_physical.py backs up)
    "DR | pgBackRest backup": dict(answers={}, check=True, phases=set(), refuses="Failed to read pgbackrest info"),
    # the Kubernetes part only (what the EDA rulebook runs); the database dump is tested in test_db_restore.py
    "DR | Backup": dict(
        answers={"db_backup_database": "false", "db_backup_terraform_state": "false"},
        phases={"preflight", "act", "report"},
    ),
    # a real restore rehearsal takes a minute and is tested in test_db_restore.py; here its check-mode launch
    "DR | Backup verify": dict(answers={}, check=True, phases=set()),
    "DR | Database restore": dict(answers={"db_restore_confirm": "ag_botkit"}, check=True, phases={"preflight"}),
    "DR | Region failover": dict(answers={}, check=True, phases={"preflight"}),
    # diagnosis only: check mode plans the recovery level and changes nothing (test_cluster_recover.py acts)
    "DR | Cluster recover": dict(answers={}, check=True, phases=set()),
    # check mode: declares nothing, changes nothing (test_security_breach.py runs it for real on its own lab objects)
    # without its evidence bucket the job must stop before any change (test_security_breach.py runs it for real)
    # (or, where an earlier scenario left the bucket, without the breach's namespace; dev/lab/breach_lab.py makes both)
    "DR | Security breach": dict(answers={}, check=True, phases=set(),
                                 refuses=("Evidence bucket", 'namespaces \\"ag-botkit-breach\\" not found')),
    "DR | Approve": dict(answers={}, phases=set()),  # answers and approvers come from the fixture below
}


SLOW_FIRST = {"DR | Region failover", "DR | Backup", "DR | Backup verify"}


@pytest.fixture(scope="module")
def templates():
    cfg = config()
    return {t["name"]: t for t in awx_job_templates(cfg["controller_templates"], str(ROOT), cfg["awx_playbook_inputs"])}


def test_every_template_is_run_here(templates):
    assert set(templates) == set(RUNS)


@pytest.fixture(scope="module")
def approval_request(lab):
    """A pending request by another operator, and an approver with their own IAM user and KMS key."""
    kw = {
        "endpoint_url": lab["env"]["AWS_URL"],
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
    s3.create_bucket(Bucket="ag-botkit-awx-approvals")
    user = f"approver-{uuid.uuid4().hex[:6]}"
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    kid = boto3.client("kms", **kw).create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    rid = uuid.uuid4().hex[:20]
    s3.put_object(
        Bucket="ag-botkit-awx-approvals",
        Key=f"approvals/requests/{rid}.json",
        Body=json.dumps(
            {
                "request_id": rid,
                "action": "db_swap",
                "target": "ag_botkit",
                "incident_id": "",
                "operator_arn": "arn:aws:iam::123456789012:user/another-operator",
            }
        ).encode(),
    )
    # what the production inventory and the approver's own AWS credential would provide in AWX
    inventory = {
        "dr_approvers": [{"name": "approver", "principal_arn": arn, "kms_key_id": kid}],
        "dr_approval_bucket": "ag-botkit-awx-approvals",
        "dr_aws_access_key": key["AccessKeyId"],
        "dr_aws_secret_key": key["SecretAccessKey"],
    }
    return rid, inventory


def run_template(name, template, how, lab_env, tmp_path, approval_request):
    answers = dict(how["answers"])
    inventory_vars = {}
    if name == "DR | Approve":
        answers["approval_request_id"], inventory_vars = approval_request
    extravars = dict(template.get("extra_vars") or {})
    extravars.pop("dr_work_dir", None)  # the controller's persistent path; the lab inventory has its own
    extravars.update(survey_extra_vars(template["survey_spec"] or {"spec": []}, answers))
    sent = dict(extravars)
    extravars.update(inventory_vars)

    started = time.monotonic()
    r = ansible_runner.run(
        private_data_dir=str(tmp_path),
        project_dir=str(ROOT),
        playbook=template["playbook"],
        inventory=str(ROOT / "inventories/lab"),
        extravars=extravars,
        envvars=dict(lab_env),
        quiet=True,
        cmdline="--check" if how.get("check") else None,
        timeout=600,
    )
    return r, sent, time.monotonic() - started


@pytest.fixture(scope="module")
def database_backup(lab_env):
    """A complete database backup in the lab's bucket, as the daily schedule leaves one: the restore and
    backup-verify templates need it (without one they rightly stop at "No complete backup")."""
    res = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", "playbooks/backup.yml",
         "-e", json.dumps({"db_backup_k8s_resources": False, "db_backup_terraform_state": False})],
        cwd=ROOT, env={**lab_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}, capture_output=True, text=True,
        timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:]


@pytest.fixture(scope="module")
def jobs(templates, lab_env, tmp_path_factory, approval_request, database_backup):
    """Every template launched at once, as a controller with enough capacity would (3 at a time here)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            name: (
                pool.submit(
                    run_template,
                    name,
                    templates[name],
                    RUNS[name],
                    lab_env,
                    tmp_path_factory.mktemp("job"),
                    approval_request,
                )
            )
            for name in sorted(RUNS, key=lambda n: n not in SLOW_FIRST)
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_template_runs_as_awx_runs_it(name, templates, jobs):
    template, how = templates[name], RUNS[name]
    r, sent, took = jobs[name]
    stdout = r.stdout.read()
    if how.get("refuses"):
        # a precondition the lab lacks: the job fails, saying why, as AWX would show it
        reasons = how["refuses"] if isinstance(how["refuses"], tuple) else (how["refuses"],)
        flat = " ".join(stdout.split())
        assert r.status == "failed" and any(x in flat for x in reasons), f"{name}:\n{stdout[-4000:]}"
        print(f"{name}: refused as expected, {took:.1f} s")
        return
    assert r.status == "successful" and r.rc == 0, f"{name} ({took:.0f} s) with {sent}:\n{stdout[-4000:]}"

    events = list(r.events)
    kinds = {e["event"] for e in events}
    assert {"playbook_on_start", "playbook_on_play_start", "playbook_on_task_start", "playbook_on_stats"} <= kinds
    stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    assert not stats.get("failures") and not stats.get("dark"), stats
    # the survey's variables reached the job as extra vars (what AWX records for the job)
    if sent:
        assert json.loads((Path(r.config.private_data_dir) / "env" / "extravars").read_text()).items() >= sent.items()

    m = re.findall(r"incident_timeline: report in (\S+)", stdout)
    assert m, stdout[-2000:]
    report = Path(m[-1])
    timeline = json.loads((report / "timeline.json").read_text())
    assert (report / "report.md").is_file()
    assert timeline["run"]["result"] == "successful" and timeline["run"]["playbook"].endswith(template["playbook"])
    phases = {p["name"] for p in timeline["phases"]}
    assert how["phases"] <= phases, phases
    print(f"{name}: {took:.1f} s, {len(events)} events, phases {sorted(phases)}")

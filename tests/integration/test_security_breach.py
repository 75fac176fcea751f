"""playbooks/security_breach.yml (plan §4) against the lab: each bullet of issue 12's Tests section.

One module-level set-up (dev/lab/breach_lab.py: its own namespace, role, secret and nodes, so the shared lab keeps
working) and five runs, in this order:
  1. --check: nothing changes in Secrets Manager, PostgreSQL, the emulator or S3;
  2. evidence cannot be written (aws.error on S3 PutObject): the run fails before any change;
  3. the real run (INC-LAB-BREACH-1): evidence, isolation, rotation, review, validation;
  3b. the same incident run again: nothing changes, one working password everywhere;
  4. a crash between ALTER ROLE and the Secret update (INC-LAB-BREACH-2, left as such a crash leaves it), then
     the run again: one working password everywhere.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from runbook_checks import run_state, seed_run, state_path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = "playbooks/security_breach.yml"
NS = "ag-botkit-breach"
SECRET_ID = "ag-botkit/lab/breach-db"
BUCKET = "ag-botkit-evidence-lab"
# unique per session: evidence under an incident id is kept (object lock) for as long as the lab runs
RUN = datetime.datetime.now(datetime.UTC).strftime("%H%M%S")
INC1, INC2 = f"INC-LAB-BREACH-{RUN}-1", f"INC-LAB-BREACH-{RUN}-2"
INC_FAIL, INC_CHECK = f"INC-LAB-BREACH-{RUN}-NOEVIDENCE", f"INC-LAB-BREACH-{RUN}-CHECK"

# the collection as Ansible imports it (make setup links .collections/ansible_collections/agbotkit/dr to the checkout):
# _rotation imports _errors through ansible_collections, so a load by file path fails when this file runs alone
sys.path.insert(0, str(ROOT / ".collections"))
rotation = importlib.import_module("ansible_collections.agbotkit.dr.plugins.module_utils._rotation")

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------------ helpers
class Lab:
    def __init__(self, lab: dict) -> None:
        self.lab = lab
        self.env = lab["env"]
        self.k8s_url = f"http://127.0.0.1:{lab['ports']['k8s']}"

    def aws(self, name: str):
        import boto3

        return boto3.client(name, region_name="us-east-1", endpoint_url=self.env["AWS_URL"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def k8s(self, path: str):
        with urllib.request.urlopen(self.k8s_url + path, timeout=10) as r:
            return json.loads(r.read())

    def secret_values(self) -> dict[str, dict[str, str]]:
        out = {}
        for s in self.k8s(f"/api/v1/namespaces/{NS}/secrets")["items"]:
            out[s["metadata"]["name"]] = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        return out

    def sm_value(self, stage: str) -> str | None:
        sm = self.aws("secretsmanager")
        try:
            return json.loads(sm.get_secret_value(SecretId=SECRET_ID, VersionStage=stage)["SecretString"])["password"]
        except sm.exceptions.ResourceNotFoundException:
            return None

    def sm_default_value(self) -> str:
        """What a client that names no stage reads (the amazon.aws lookup, the SDKs): AWSCURRENT on AWS."""
        return json.loads(self.aws("secretsmanager").get_secret_value(SecretId=SECRET_ID)["SecretString"])["password"]

    def sm_versions(self) -> dict:
        return self.aws("secretsmanager").describe_secret(SecretId=SECRET_ID)["VersionIdsToStages"]

    def logs_in(self, password: str) -> bool:
        import psycopg

        try:
            psycopg.connect(host=self.env["PGHOST"], port=int(self.env["PGPORT"]), user="agbot_breach",
                            password=password, dbname="ag_botkit", connect_timeout=5).close()
            return True
        except psycopg.OperationalError as e:
            assert "password authentication failed" in str(e), e
            return False

    def role_hash(self) -> str:
        import psycopg

        with psycopg.connect(host=self.env["PGHOST"], port=int(self.env["PGPORT"]), user=self.env["PGUSER"],
                             password=self.lab["secrets"]["db_password"], dbname="ag_botkit") as c:
            return c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'agbot_breach'").fetchone()[0]

    def pods(self) -> dict[str, tuple[str, str]]:
        """deployment -> (pod name, container id lab://<pid>)"""
        out = {}
        for p in self.k8s(f"/api/v1/namespaces/{NS}/pods")["items"]:
            app = p["metadata"]["labels"].get("app.kubernetes.io/name")
            cs = (p.get("status") or {}).get("containerStatuses") or [{}]
            if p.get("metadata", {}).get("deletionTimestamp"):
                continue
            out[app] = (p["metadata"]["name"], cs[0].get("containerID"))
        return out

    def evidence_keys(self, prefix: str) -> list[str]:
        s3 = self.aws("s3")
        try:
            return [o["Key"] for o in s3.list_object_versions(Bucket=BUCKET, Prefix=prefix + "/").get("Versions", [])]
        except s3.exceptions.NoSuchBucket:
            return []

    def evidence_bucket(self) -> list[tuple[str, str]] | None:
        """Every object version in the evidence bucket (all incidents), None when the bucket does not exist."""
        s3 = self.aws("s3")
        try:
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
            return sorted((v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", []))
        except s3.exceptions.NoSuchBucket:
            return None

    def one_password(self) -> dict:
        """Where the breach's password lives, compared (no values): all must agree and log in."""
        current = self.sm_value("AWSCURRENT")
        return {"default_read_is_current": self.sm_default_value() == current,
                "k8s_is_current": self.secret_values()["breach-db"]["DATABASE_PASSWORD"] == current,
                "current_logs_in": self.logs_in(current)}

    def state(self) -> dict:
        """Everything check mode must leave alone."""
        ec2 = self.aws("ec2")
        enis = ec2.describe_instances(Filters=[{"Name": "tag:lab:scenario", "Values": ["security_breach"]},
                                               {"Name": "instance-state-name", "Values": ["running"]}])
        deployments = self.k8s(f"/apis/apps/v1/namespaces/{NS}/deployments")["items"]
        return {
            "sm": self.sm_versions(), "role": self.role_hash(), "secrets": self.secret_values(),
            "deployments": {d["metadata"]["name"]: d["metadata"]["generation"] for d in deployments},
            "netpol": [n["metadata"]["name"] for n in
                       self.k8s(f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies")["items"]],
            "sgs": sorted((i["InstanceId"], tuple(sorted(g["GroupId"] for g in i["NetworkInterfaces"][0]["Groups"])))
                          for r in enis["Reservations"] for i in r["Instances"]),
            "asg": sorted((i["InstanceId"], i["LifecycleState"]) for g in self.aws("autoscaling")
                          .describe_auto_scaling_groups(AutoScalingGroupNames=["ag-botkit-breach-lab-nodes"])[
                              "AutoScalingGroups"] for i in g["Instances"]),
            "evidence": self.evidence_bucket(),
            "kill_switch": json.loads(urllib.request.urlopen(self.env["LAB_MINIBOT_URL"] + "/api/kill-switch",
                                                             timeout=10).read())["state"],
        }


def report_dir(lab: dict, incident: str) -> Path:
    return Path(lab["root"]) / "reports" / incident


def run(run_playbook, incident: str, *args: str, **extra):
    extra_vars = {"incident_id": incident, "secret_rotation_exchange_confirmed_by": "lab tester", **extra}
    t0 = time.monotonic()
    res = run_playbook(PLAYBOOK, *args, extra_vars=extra_vars)
    res.seconds = time.monotonic() - t0
    return res


# ------------------------------------------------------------------------------------------------ the runs
@pytest.fixture(scope="module")
def breach_lab(lab, lab_env):
    """The breach's own namespace, role, secret and nodes (dev/lab/breach_lab.py), once per module; removed after."""
    py = str(ROOT / ".venv/bin/python")
    setup = subprocess.run([py, "dev/lab/breach_lab.py", "setup"], cwd=ROOT, env=lab_env, capture_output=True,
                           text=True, check=False, timeout=180)
    assert setup.returncode == 0, setup.stderr
    yield Lab(lab)
    subprocess.run([py, "dev/lab/breach_lab.py", "teardown"], cwd=ROOT, env=lab_env, capture_output=True, text=True,
                   check=False, timeout=120)


@pytest.fixture(scope="module")
def breach(breach_lab, lab, run_playbook):
    original = json.loads((Path(lab["lab_dir"]) / "breach.json").read_text())["password"]
    h = breach_lab
    out = {"lab": h, "original": original, "kill_token": h.secret_values()["breach-db"]["KILL_SWITCH_TOKEN"],
           "other": h.secret_values()["breach-other"]["UNRELATED"], "runs": {}}

    # 1. check mode
    out["before_check"] = h.state()
    out["runs"]["check"] = run(run_playbook, INC_CHECK, "--check")
    out["after_check"] = h.state()
    out["evidence_after_check"] = h.evidence_keys(INC_CHECK)

    # 2. evidence cannot be written
    fault = Path(lab["lab_dir"]) / "faults" / "aws.error"
    # the lab's resolver names a PutObject CopyObject (same PUT /{Bucket}/{Key+} route): fault both names
    fault.write_text(json.dumps({"service": "s3", "action": ["PutObject", "CopyObject"]}))
    try:
        out["runs"]["no_evidence"] = run(run_playbook, INC_FAIL)
    finally:
        fault.unlink(missing_ok=True)
    out["after_no_evidence"] = h.state()

    # 3. the real run
    out["pods_before"] = h.pods()
    out["runs"]["main"] = run(run_playbook, INC1)
    out["pods_after"] = h.pods()
    out["bot_health"] = h.k8s(f"/api/v1/namespaces/{NS}/pods/{out['pods_after']['bot'][0]}:9091/proxy/health")
    out["state_after"] = h.state()
    out["new"] = h.sm_value("AWSCURRENT")
    # the report folder of the first run as it left it (the re-run below writes its own timeline and log entries)
    out["main_reports"] = {f.name: f.read_text() for f in report_dir(lab, INC1).iterdir() if f.is_file()}

    # 3b. the same incident again (an operator re-running a completed incident): nothing changes
    out["runs"]["rerun"] = run(run_playbook, INC1)
    out["pods_after_rerun"] = h.pods()
    out["state_after_rerun"] = h.state()
    out["password_after_rerun"] = h.one_password()

    # 4. a crash between ALTER ROLE and the Kubernetes Secret update, as it leaves things: this incident's version
    #    stored as AWSPENDING, the role already using it, AWSCURRENT and the Secret still on the previous value.
    crashed = "CrashedRun" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:20]
    sm = h.aws("secretsmanager")
    sm.put_secret_value(SecretId=SECRET_ID, ClientRequestToken=rotation.version_token(INC2, SECRET_ID),
                        SecretString=json.dumps({"username": "agbot_breach", "password": crashed}),
                        VersionStages=["AWSPENDING"])
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=lab["env"]["PGHOST"], port=int(lab["env"]["PGPORT"]), user="agbot_breach",
                         password=out["new"], dbname="ag_botkit", autocommit=True) as c:
        c.execute(sql.SQL("ALTER ROLE agbot_breach WITH PASSWORD {}").format(sql.Literal(crashed)))
    out["crashed"] = crashed
    out["crash_state"] = {"current_logs_in": h.logs_in(out["new"]), "pending_logs_in": h.logs_in(crashed)}
    out["pods_before_resume"] = h.pods()
    out["runs"]["resume"] = run(run_playbook, INC2)
    out["pods_after_resume"] = h.pods()
    return out


def _ok(res):
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ check mode
def test_check_mode_changes_nothing(breach):
    _ok(breach["runs"]["check"])
    before, after = breach["before_check"], breach["after_check"]
    for key in ("sm", "role", "secrets", "deployments", "netpol", "sgs", "asg", "kill_switch", "evidence"):
        assert after[key] == before[key], key
    assert breach["evidence_after_check"] == []
    out = breach["runs"]["check"].stdout
    assert "Check mode, nothing written: would write" in out and f"Evidence of {INC_CHECK}" not in out


# ------------------------------------------------------------------------------------------------ evidence first
def test_no_change_when_evidence_cannot_be_written(breach):
    res = breach["runs"]["no_evidence"]
    assert res.returncode != 0
    assert "Failed to write evidence object" in res.stdout + res.stderr
    after, before = breach["after_no_evidence"], breach["after_check"]
    for key in ("sm", "role", "secrets", "deployments", "netpol", "sgs", "asg"):
        assert after[key] == before[key], key
    assert after["kill_switch"] == "halted"  # the kill switch is the one step before the evidence


def test_evidence_objects_match_their_sha256_with_legal_hold(breach, lab):
    _ok(breach["runs"]["main"])
    s3 = breach["lab"].aws("s3")
    manifest_obj = s3.get_object(Bucket=BUCKET, Key=f"{INC1}/manifest.json")
    manifest_bytes = manifest_obj["Body"].read()
    manifest = json.loads(manifest_bytes)
    keys = {o["key"].split("/", 1)[1] for o in manifest["objects"]}
    assert {"resources/resources.json", "resources/secret.json", "aws/instances.json",
            "aws/cloudtrail-events.json"} <= keys
    assert any(k.startswith("logs/bot-") for k in keys) and any(k.startswith("logs/feed-") for k in keys)
    for o in manifest["objects"]:
        body = s3.get_object(Bucket=BUCKET, Key=o["key"], VersionId=o["version_id"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == o["sha256"], o["key"]
        assert s3.get_object_legal_hold(Bucket=BUCKET, Key=o["key"], VersionId=o["version_id"])[
            "LegalHold"]["Status"] == "ON"
    # the snapshots of the affected nodes' volumes are referenced and exist
    snaps = [r["snapshot_id"] for r in manifest["references"] if r["type"] == "ebs-snapshot"]
    assert snaps
    assert len(breach["lab"].aws("ec2").describe_snapshots(SnapshotIds=snaps)["Snapshots"]) == len(snaps)
    # legal hold: a locked version cannot be deleted
    first = manifest["objects"][0]
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=BUCKET, Key=first["key"], VersionId=first["version_id"])
    # chain of custody in the communication log: who, when, where, the manifest's hash
    log = [json.loads(x) for x in breach["main_reports"]["communication.jsonl"].splitlines()]
    custody = [e for e in log if e["type"] == "custody"]
    assert len(custody) == 1
    assert custody[0]["sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert custody[0]["who"] and custody[0]["time"] and f"{INC1}/manifest.json" in custody[0]["where"]


def test_timeline_shows_evidence_written_before_the_first_change(breach, lab):
    timeline = json.loads(breach["main_reports"]["timeline.json"])

    def ts(s):
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))

    tasks = timeline["tasks"]
    stored = [t for t in tasks if t["action"] == "agbotkit.dr.evidence_store"]
    assert len(stored) == 1 and stored[0]["hosts"]["localhost"]["status"] == "changed"
    changes = [t for t in tasks if (t.get("role") or "").split(".")[-1] in ("forensics", "secret_rotation")
               and t["action"] not in ("agbotkit.dr.evidence_store", "ansible.builtin.copy", "ansible.builtin.file",
                                       "amazon.aws.ec2_snapshot", "amazon.aws.s3_bucket")
               and any(h.get("status") == "changed" for h in t["hosts"].values())]
    assert changes, "no change recorded"
    assert ts(stored[0]["end"]) <= min(ts(t["start"]) for t in changes)


# ------------------------------------------------------------------------------------------------ isolation
def test_isolation(breach):
    h = breach["lab"]
    pol = h.k8s(f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/agbotkit-quarantine")
    assert pol["spec"]["podSelector"] == {} and sorted(pol["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert pol["spec"]["ingress"] == [{"from": [{"ipBlock": {"cidr": "10.0.200.0/24"}}],
                                       "ports": [{"port": 22}, {"port": 443}]}]
    state = breach["state_after"]
    ec2 = h.aws("ec2")
    quarantine = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["ag-botkit-quarantine"]}])[
        "SecurityGroups"]
    assert len(quarantine) == 1 and quarantine[0]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] == "10.0.200.0/24"
    in_quarantine = {i for i, groups in state["sgs"] if groups == (quarantine[0]["GroupId"],)}
    # the affected nodes are those running the namespace's pods; their instances, and only they, are isolated
    nodes = {p["spec"]["nodeName"] for p in h.k8s(f"/api/v1/namespaces/{NS}/pods")["items"]}
    by_name = {i["PrivateDnsName"]: i["InstanceId"] for r in ec2.describe_instances(Filters=[
        {"Name": "tag:lab:scenario", "Values": ["security_breach"]}])["Reservations"] for i in r["Instances"]}
    assert in_quarantine and in_quarantine == {by_name[n] for n in nodes if n in by_name}
    inst = h.aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["ag-botkit-breach-lab-nodes"])[
        "AutoScalingGroups"][0]["Instances"]
    quarantined = [i for i in inst if i["LifecycleState"] == "Standby"]
    assert {i["InstanceId"] for i in quarantined} == in_quarantine
    assert quarantined and all(i["ProtectedFromScaleIn"] for i in quarantined)


# ------------------------------------------------------------------------------------------------ rotation
def test_every_old_value_is_gone_and_the_old_password_is_refused(breach):
    h, old, new = breach["lab"], breach["original"], breach["new"]
    assert new and new != old and len(new) == 32
    assert breach["state_after"]["secrets"]["breach-db"]["DATABASE_PASSWORD"] == new
    assert all(old not in values.values() for values in breach["state_after"]["secrets"].values())
    assert not h.logs_in(old)
    # AWSPREVIOUS is kept (the old value), AWSCURRENT is the new one
    versions = breach["state_after"]["sm"]
    stages = {s: v for v, labels in versions.items() for s in labels}
    assert stages["AWSCURRENT"] == rotation.version_token(INC1, SECRET_ID) and "AWSPREVIOUS" in stages
    prev = json.loads(h.aws("secretsmanager").get_secret_value(SecretId=SECRET_ID, VersionId=stages["AWSPREVIOUS"])[
        "SecretString"])["password"]
    assert prev == old


def test_restarted_pods_serve_with_the_new_value_and_others_were_not_restarted(breach):
    before, after = breach["pods_before"], breach["pods_after"]
    assert after["bot"][0] != before["bot"][0] and after["bot"][1] != before["bot"][1]
    assert after["feed"] == before["feed"]
    # the new bot process logs in with the value it read from the Secret
    health = breach["bot_health"]
    assert health["db"] == "ok" and health["database"]["user"] == "agbot_breach"


def test_exchange_keys_step_records_who_confirmed_and_stops_without_it(breach, lab):
    log = [json.loads(x) for x in breach["main_reports"]["communication.jsonl"].splitlines()]
    approvals = [e for e in log if e["type"] == "decision" and e.get("kind") == "approval"]
    assert len(approvals) == 1 and approvals[0]["who"] == "lab tester" and "lab-exchange" in approvals[0]["decision"]
    declared = [e for e in log if e["type"] == "declare"]
    assert declared and declared[0]["severity"] == "P0"


def test_aws_activity_review_flags_principals_outside_the_allow_list(breach, lab):
    review = json.loads(breach["main_reports"]["aws_activity_review.json"])
    # the intruder is flagged and nothing on the allow-list is; other principals of the shared lab (e.g. an
    # approver another test created) are flagged too, rightly: they are not on the allow-list
    assert "lab-intruder" in review["flagged"] and "root" not in review["flagged"]
    assert all(p["principal"] not in review["flagged"] for p in review["principals"] if p.get("allowed"))
    intruder = next(p for p in review["principals"] if p["principal"] == "lab-intruder")
    assert intruder["actions"].get("secretsmanager:GetSecretValue", 0) >= 1  # one per set-up in the window
    assert next(p for p in review["principals"] if p["principal"] == "root")["allowed"]


def test_kill_switch_stays_halted_without_explicit_request(breach):
    assert breach["state_after"]["kill_switch"] == "halted"
    assert "Resume trading" in breach["runs"]["main"].stdout  # the step exists and was skipped
    assert "kill_switch_state=reset" not in breach["runs"]["main"].stdout


# ------------------------------------------------------------------------------------------------ re-run
def _changed_tasks(stdout: str) -> list[str]:
    """Tasks of the product's roles that reported a change (the incident log is per run, so left out)."""
    out = []
    for block in stdout.split("\nTASK [")[1:]:
        name = block.split("]", 1)[0]
        if name.startswith("agbotkit.dr.") and not name.startswith("agbotkit.dr.incident ") \
                and re.search(r"^changed: \[", block, re.M):
            out.append(name)
    return out


def test_rerun_of_a_completed_incident_changes_nothing_and_leaves_one_password(breach):
    res = breach["runs"]["rerun"]
    _ok(res)
    assert "phase done, steps done: none" in res.stdout
    assert _changed_tasks(res.stdout) == []
    after, before = breach["state_after_rerun"], breach["state_after"]
    for key in ("sm", "role", "secrets", "deployments", "netpol", "sgs", "asg", "kill_switch", "evidence"):
        assert after[key] == before[key], key
    assert breach["pods_after_rerun"] == breach["pods_after"]  # nothing restarted
    # one password: Secrets Manager's AWSCURRENT, what a client naming no stage reads, the Kubernetes Secret, and
    # what PostgreSQL accepts
    assert breach["password_after_rerun"] == {"default_read_is_current": True, "k8s_is_current": True,
                                              "current_logs_in": True}


# ------------------------------------------------------------------------------------------------ resume
def test_rerun_after_a_crash_between_alter_role_and_the_secret_update_ends_with_one_password(breach):
    # the crash state is what it should be: only the pending value logs in, the bot's Secret has the old one
    assert breach["crash_state"] == {"current_logs_in": False, "pending_logs_in": True}
    res = breach["runs"]["resume"]
    _ok(res)
    assert "phase promote, steps done: promote" in res.stdout
    h, crashed = breach["lab"], breach["crashed"]
    assert h.sm_value("AWSCURRENT") == crashed  # the pending value was adopted, not a third one made
    assert h.sm_value("AWSPREVIOUS") == breach["new"]
    assert h.sm_value("AWSPENDING") is None
    assert h.secret_values()["breach-db"]["DATABASE_PASSWORD"] == crashed
    assert h.logs_in(crashed) and not h.logs_in(breach["new"]) and not h.logs_in(breach["original"])
    assert breach["pods_after_resume"]["bot"] != breach["pods_before_resume"]["bot"]
    assert breach["pods_after_resume"]["feed"] == breach["pods_before"]["feed"]


# ------------------------------------------------------------------------------------------------ secrets
def test_no_secret_value_in_any_output_log_or_report(breach, lab):
    values = {breach["original"], breach["new"], breach["crashed"], breach["kill_token"], breach["other"],
              *[v for v in lab["secrets"].values() if isinstance(v, str) and len(v) >= 8]}
    texts = {}
    for name, res in breach["runs"].items():
        texts[f"run {name} stdout"] = res.stdout
        texts[f"run {name} stderr"] = res.stderr
    for inc in (INC1, INC2, INC_CHECK, INC_FAIL):
        folder = report_dir(lab, inc)
        for f in folder.rglob("*") if folder.exists() else []:
            if f.is_file():
                texts[str(f)] = f.read_text(errors="replace")
    assert not [(w, len(v)) for w, t in texts.items() for v in values if v in t]
    # the sinks record each channel's own credential (Slack's webhook token in the URL, PagerDuty's routing key in
    # the body): there, look for the breach's values only
    breach_values = {breach["original"], breach["new"], breach["crashed"], breach["kill_token"], breach["other"]}
    sinks = Path(lab["lab_dir"]) / "sinks"
    for f in sinks.glob("*.jsonl"):
        text = f.read_text(errors="replace")
        assert not [len(v) for v in breach_values if v in text], f
    s3 = breach["lab"].aws("s3")
    for key in breach["lab"].evidence_keys(INC1):
        texts[f"s3 {key}"] = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode(errors="replace")
    assert len(texts) > 10
    leaks = [(where, f"value of {len(v)} chars") for where, text in texts.items() for v in values if v in text]
    assert leaks == []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_rotation_refuses_without_preserved_evidence(breach, run_playbook):
    h = breach["lab"]
    before = (h.sm_versions(), h.role_hash(), h.secret_values())
    res = run_playbook("tests/integration/playbooks/breach_rotate_only.yml",
                       extra_vars={"incident_id": f"INC-LAB-BREACH-{RUN}-NOGATE"})
    assert res.returncode != 0
    assert f"No preserved evidence for incident INC-LAB-BREACH-{RUN}-NOGATE" in res.stdout
    assert (h.sm_versions(), h.role_hash(), h.secret_values()) == before


# ------------------------------------------------------------------------------------------------ runbook: stop, resume
INC_RESUME = f"INC-LAB-BREACH-{RUN}-RESUME"


def _slack(lab, incident: str) -> list[str]:
    """The Slack messages of one incident, as the lab's sink received them."""
    with urllib.request.urlopen(f"{lab['env']['LAB_SINK_URL']}/_sink/slack", timeout=10) as r:
        bodies = [json.dumps(e.get("body")) for e in json.loads(r.read())]
    return [" ".join(b.split()) for b in bodies if incident in b]


@pytest.fixture(scope="module")
def breach_resumed(breach, lab, lab_env):
    """Last in the module (it rotates the secret once more): a run of a new incident without the exchange
    confirmation stops in step contain, at the manual gate; the same command with the confirmation resumes."""
    h, state_file = breach["lab"], Path(lab["lab_dir"]) / "region_failover" / "security_breach.json"

    def play(**extra):
        # stdin from /dev/null: the manual gate's pause must see a non-interactive run, even under a terminal
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", PLAYBOOK,
               "-e", json.dumps({"incident_id": INC_RESUME, **extra})]
        return subprocess.run(cmd, cwd=ROOT, env=lab_env, capture_output=True, text=True, check=False, timeout=900,
                              stdin=subprocess.DEVNULL)

    out = {"stopped": play()}
    out["state_stopped"] = json.loads(state_file.read_text())
    out["before_resume"], out["pods_before_resume"] = h.state(), h.pods()
    out["resumed"] = play(secret_rotation_exchange_confirmed_by="lab tester")
    out["state_resumed"] = json.loads(state_file.read_text())
    out["after_resume"], out["pods_after_resume"] = h.state(), h.pods()
    return out


def test_a_failed_step_sends_the_runbook_failure_notification(breach, lab):
    """The evidence step failed (run 2): the rescue notified, naming the step and the state left, and stopped."""
    res = breach["runs"]["no_evidence"]
    out = " ".join((res.stdout + res.stderr).split())
    assert "Security breach stopped in step evidence: Failed to write evidence object" in out, out[-3000:]
    sent = [m for m in _slack(lab, INC_FAIL) if "Security breach FAILED in step evidence" in m]
    assert len(sent) == 1, _slack(lab, INC_FAIL)
    assert "Failed to write evidence object" in sent[0] and "Trading is halted" in sent[0]
    assert f"Evidence of {INC_FAIL} not preserved in this run, so the gate kept isolation and rotation" in sent[0]


def test_manual_gate_stops_in_contain_and_the_rerun_resumes_without_repeating_done_steps(breach_resumed, lab):
    stopped = breach_resumed["stopped"]
    out = " ".join((stopped.stdout + stopped.stderr).split())
    assert stopped.returncode != 0
    assert "Security breach stopped in step contain: The exchange API keys of lab-exchange are not confirmed" in out, \
        out[-3000:]
    state = breach_resumed["state_stopped"]
    assert (state["incident_id"], state["status"], state["completed"]) == (
        INC_RESUME, "failed", ["immediate", "evidence", "isolate"])
    sent = [m for m in _slack(lab, INC_RESUME) if "Security breach FAILED in step contain" in m]
    assert len(sent) == 1 and "Trading is halted" in sent[0] and f"Evidence of {INC_RESUME} preserved: s3://" in sent[0]

    res = breach_resumed["resumed"]
    _ok(res)
    assert f"Resuming {INC_RESUME}" in res.stdout
    assert [m for m in _slack(lab, INC_RESUME) if "Resumed security breach response" in m
            and "steps done: immediate, evidence, isolate" in m]
    # nothing done before is done again: no task of the product's roles changed anything, no evidence object was
    # written again, no secret version made, no pod restarted; only the manual confirmation and what follows ran
    assert _changed_tasks(res.stdout) == []
    assert "phase done, steps done: none" in res.stdout
    before, after = breach_resumed["before_resume"], breach_resumed["after_resume"]
    for key in ("sm", "role", "secrets", "deployments", "netpol", "sgs", "asg", "kill_switch", "evidence"):
        assert after[key] == before[key], key
    assert breach_resumed["pods_after_resume"] == breach_resumed["pods_before_resume"]
    # one run: the first attempt's declaration time (RTO counts from it) and its steps, each once, in plan order
    resumed = breach_resumed["state_resumed"]
    assert resumed["status"] == "completed" and resumed["declared_at"] == state["declared_at"]
    assert resumed["completed"] == ["immediate", "evidence", "isolate", "contain", "investigate", "validate"]
    assert [p["step"] for p in resumed["phases"]] == resumed["completed"]
    assert resumed["phases"][:3] == state["phases"]


# ------------------------------------------------------------------------------------------------ runbook: the gate
# Isolation and rotation pass roles/runbook `gate` on this run's evidence (playbooks/vars/security_breach.yml,
# security_breach_evidence_gate). Whatever tags a tired engineer gives (the exchange confirmation given too), a run
# without this run's preserved evidence stops at the gate and changes nothing. Each run stops there within seconds;
# only breach_lab is needed (last in the module, so the module's set-up is shared).
GATE_REFUSED = "{} was not done: this run ({}) has no passing evidence step recorded"
TAGS_NEVER_OPEN = "tags alone never open this gate"
UNCHANGED = ("sm", "role", "secrets", "deployments", "netpol", "sgs", "asg", "evidence")


def _gate_run(run_playbook, incident: str | None, *tags: str):
    extra = {"secret_rotation_exchange_confirmed_by": "lab tester", "dr_incident_enabled": False}
    res = run_playbook(PLAYBOOK, *tags, extra_vars={**extra, "incident_id": incident} if incident else extra)
    return res, " ".join((res.stdout + res.stderr).split())


@pytest.mark.parametrize(("tags", "action"), [
    (["--tags", "contain"], "Credential rotation"),
    (["--tags", "isolate,contain"], "Isolation"),
    (["--skip-tags", "evidence"], "Isolation"),
    (["--tags", "contain", "--skip-tags", "always"], "Credential rotation"),
], ids=["tags-contain", "tags-isolate-contain", "skip-evidence", "tags-contain-skip-always"])
def test_evidence_gate_refuses_tags_that_skip_the_evidence(breach_lab, run_playbook, tags, action):
    h = breach_lab
    incident = f"INC-LAB-BREACH-{RUN}-GATE-{'-'.join(tags).replace(',', '-').replace('--', '')}"
    before = h.state()
    res, out = _gate_run(run_playbook, incident, *tags)
    assert res.returncode != 0, out[-3000:]
    # --skip-tags always skips the declaration (so no run: "?") and the rescue, never the gate
    shown = "?" if "always" in tags else incident
    assert GATE_REFUSED.format(action, shown) in out and TAGS_NEVER_OPEN in out, out[-3000:]
    assert "(forensics_result): not preserved" in out
    after = h.state()
    for key in UNCHANGED:   # nothing isolated, nothing rotated, no evidence written (the kill switch may be halted)
        assert after[key] == before[key], key
    assert h.evidence_keys(incident) == []


def test_evidence_gate_accepts_no_record_of_another_incident_or_run(breach_lab, run_playbook, lab):
    """The run state records that an evidence step was done, never the evidence: a previous run of incident A that
    preserved its evidence and stopped in contain (as test_manual_gate_... leaves it) opens the gate neither for
    incident B, nor for A's run resumed by name or by default with --tags contain."""
    h, path = breach_lab, state_path(lab, "security_breach")
    saved = path.read_text() if path.exists() else None
    prior = f"INC-LAB-BREACH-{RUN}-PRIOR"
    try:
        seed_run(lab, "security_breach", prior, ["immediate", "evidence", "isolate"], time.time(), mode="respond")
        before = h.state()

        res, out = _gate_run(run_playbook, f"INC-LAB-BREACH-{RUN}-OTHER", "--tags", "contain")   # another incident
        assert res.returncode != 0
        assert GATE_REFUSED.format("Credential rotation", f"INC-LAB-BREACH-{RUN}-OTHER") in out, out[-3000:]
        assert "(steps done: none;" in out
        assert run_state(lab, "security_breach")["incident_id"] == f"INC-LAB-BREACH-{RUN}-OTHER"

        for incident in (prior, None):   # A's own run resumed: by its id (continue the incident), and by default
            seed_run(lab, "security_breach", prior, ["immediate", "evidence", "isolate"], time.time(), mode="respond")
            res, out = _gate_run(run_playbook, incident, "--tags", "contain")
            assert res.returncode != 0
            assert f"Resuming {prior}" in out, out[-3000:]
            assert GATE_REFUSED.format("Credential rotation", prior) in out, out[-3000:]
            assert "(steps done: immediate, evidence, isolate;" in out
            assert f"evidence of {prior} preserved and read back in this run (forensics_result): not preserved" in out
        after = h.state()
        for key in UNCHANGED:
            assert after[key] == before[key], key
    finally:
        if saved is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(saved)

"""playbooks/readiness.yml against the lab (issue 15): one shared run in which all ten checks pass, then one targeted
fault per new check (-e readiness_checks=[...] runs only the check under test), each failing with a message that
says what to do, a non-zero exit and the failed check named in the report.

The module fixture makes what a ready lab has: a pgBackRest backup, a signed dump in the primary bucket and its copy
in the recovery region's bucket (moto does not perform S3 replication, so the test copies it, as replication would),
and a Terraform workspace (rdtest, no EKS cluster) applied so that it plans with no changes; it is destroyed after.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev" / "lab"))
import aws_faults  # noqa: E402

BUCKET, DR_BUCKET = "ag-botkit-backups", "ag-botkit-backups-dr"
ZONE, RECORD = "ag-botkit.example.com", "api.ag-botkit.example.com"
ALL = ["wal_archive", "pgbackrest_backup", "s3_dumps", "rds", "recovery_region", "route53", "terraform_plan",
       "signing_key", "kill_switch", "dr_kubeconfig"]
TF_VARS = {"name_prefix": "ag-botkit-rd", "create_eks_cluster": False, "vpc_cidr": "10.9.0.0/16",
           "private_subnet_cidrs": ["10.9.1.0/24", "10.9.2.0/24"], "eks_cluster_policy_arns": [],
           "eks_node_policy_arns": []}


def output(res) -> str:
    return res.stdout + res.stderr


def client(lab, service, region="us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=lab["env"]["AWS_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


# this lab's own report folder: make test runs lanes side by side in one checkout, and another lane's readiness
# run (test_db_restore_physical) writing to the shared reports/ would be "the newest report" here
REPORT_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab")).resolve() / "readiness-reports"


def newest_report() -> dict:
    return json.loads(sorted(REPORT_DIR.glob("readiness-*.json"))[-1].read_text())


def copy_newest_dump(lab) -> str:
    """Copy the newest complete dump to the recovery region's bucket, as the bucket's replication would."""
    src, dst = client(lab, "s3"), client(lab, "s3", "us-west-2")
    keys = [o["Key"] for p in src.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="database/")
            for o in p.get("Contents", [])]
    bid = sorted({k.split("/")[1] for k in keys if k.endswith("/manifest.json")})[-1]
    for key in keys:
        if key.startswith(f"database/{bid}/"):
            dst.copy_object(Bucket=DR_BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": key})
    return bid


def dr_dump_keys(lab) -> list[str]:
    s3 = client(lab, "s3", "us-west-2")
    return [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=DR_BUCKET, Prefix="database/")
            for o in p.get("Contents", [])]


@pytest.fixture(scope="module")
def ready(lab, run_playbook):
    t0 = time.time()
    res = run_playbook("playbooks/pgbackrest.yml", extra_vars={"pgbackrest_backup_type": "full"})
    assert res.returncode == 0, output(res)[-3000:]
    res = run_playbook("playbooks/backup.yml", extra_vars={"db_backup_k8s_resources": False,
                                                           "db_backup_terraform_state": False})
    assert res.returncode == 0, output(res)[-3000:]
    copy_newest_dump(lab)
    res = run_playbook("tests/integration/playbooks/readiness_tf.yml", "--skip-tags", "verify")
    assert res.returncode == 0, output(res)[-3000:]
    print(f"readiness fixture: {time.time() - t0:.1f} s")
    yield {"dr_incident_enabled": False, "readiness_report_dir": str(REPORT_DIR),
           "readiness_terraform_workspace": "rdtest", "readiness_terraform_state_dir": f"{lab['lab_dir']}/terraform_rd",
           "readiness_terraform_variables": TF_VARS}
    res = run_playbook("tests/integration/playbooks/readiness_tf.yml", "--skip-tags", "verify",
                       extra_vars={"rd_tf_state": "absent"})
    assert res.returncode == 0, output(res)[-3000:]


# the fault tests that need nothing of the fixture
QUIET = {"dr_incident_enabled": False, "readiness_report_dir": str(REPORT_DIR)}


def run_failing(run_playbook, ready, checks, **extra):
    res = run_playbook("playbooks/readiness.yml", extra_vars={**ready, "readiness_checks": checks, **extra})
    out = " ".join(output(res).split())
    assert res.returncode != 0, out[-3000:]
    report = newest_report()
    assert report["ok"] is False
    return out, report


def test_all_ten_checks_pass_in_one_report(ready, run_playbook):
    t0 = time.time()
    res = run_playbook("playbooks/readiness.yml", extra_vars=ready)
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    report = newest_report()
    assert [c["check"] for c in report["checks"]] == ALL
    assert all(c["ok"] for c in report["checks"]), report
    assert report["failed"] == [] and report["not_checked"] == []
    by = {c["check"]: c for c in report["checks"]}
    assert by["recovery_region"]["dump"] and by["recovery_region"]["snapshot"].endswith("-dr")
    assert by["rds"]["latest_restorable_time"] and by["route53"]["health_check"]
    assert "plans with no changes" in by["terraform_plan"]["message"]
    print(f"readiness, all ten checks: {time.time() - t0:.1f} s")


def test_recovery_region_without_copies_fails(run_playbook, lab):
    s3 = client(lab, "s3", "us-west-2")
    had = dr_dump_keys(lab)
    for key in had:
        s3.delete_object(Bucket=DR_BUCKET, Key=key)
    deleted = aws_faults.delete_snapshots(lab["env"]["AWS_URL"])
    assert deleted
    try:
        out, report = run_failing(run_playbook, QUIET, ["recovery_region"])
        assert "Readiness failed (recovery_region)" in out
        assert "no complete dump copy in s3://ag-botkit-backups-dr/database/ (us-west-2)" in out
        assert "turn on S3 replication" in out
        assert "no RDS snapshot copy in us-west-2: copy the newest snapshot (aws rds copy-db-snapshot" in out
    finally:
        aws_faults.restore_snapshots(lab["env"]["AWS_URL"], Path(lab["lab_dir"]))
        if had:   # put a copy back, as replication would (reading the copies back trips botocore's checksum
            copy_newest_dump(lab)   # check on objects moto copied into the SSE-KMS bucket)


def test_rds_latest_restorable_time_over_the_objective_fails(run_playbook, lab, fault):
    fault("pg.archive_fail")
    off = datetime.now(UTC)
    env = lab["env"]
    with psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"],
                         dbname="postgres", autocommit=True, connect_timeout=5) as c:
        c.execute("SELECT txid_current()")
        c.execute("SELECT pg_switch_wal()")
    time.sleep(4)
    out, report = run_failing(run_playbook, QUIET, ["rds"], readiness_rpo_objective_seconds=3)
    assert "Readiness failed (rds)" in out and "over the RPO objective of 3 s" in out
    assert "check the instance's events (aws rds describe-events)" in out
    rds = report["checks"][0]
    lrt = datetime.fromisoformat(rds["latest_restorable_time"].replace("Z", "+00:00"))
    assert lrt <= off and rds["seconds"] > 3


def test_route53_primary_record_without_health_check_fails(run_playbook, lab):
    r53 = client(lab, "route53")
    zone = [z for z in r53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"] if z["Name"] == ZONE + "."][0]["Id"]
    primary = [r for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
               if r["Name"] == RECORD + "." and r.get("Failover") == "PRIMARY"][0]
    assert primary.get("HealthCheckId")
    bare = {k: v for k, v in primary.items() if k != "HealthCheckId"}
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": bare}]})
    try:
        out, _ = run_failing(run_playbook, QUIET, ["route53"])
        assert "Readiness failed (route53)" in out
        assert f"the PRIMARY failover record {RECORD} has no health check attached" in out
        assert "Route53 will never fail over on its own" in out
    finally:
        r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": primary}]})


def test_terraform_workspace_that_drifted_fails(ready, run_playbook, lab):
    ec2 = client(lab, "ec2", "us-west-2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["ag-botkit-rd-vpc"]}])["Vpcs"][0]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "renamed-by-hand"}])
    try:
        out, report = run_failing(run_playbook, ready, ["terraform_plan"])
        assert "Readiness failed (terraform_plan)" in out
        assert "workspace rdtest has changes pending (Plan: 0 to add, 1 to change, 0 to destroy.)" in out
        assert "review `terraform plan`" in out
        assert report["checks"][0]["summary"].startswith("Plan:")
    finally:
        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "ag-botkit-rd-vpc"}])


def test_signing_key_that_cannot_sign_fails(run_playbook, fault):
    fault("aws.error", {"service": "kms", "action": "Sign", "code": "DisabledException", "status": 400})
    out, _ = run_failing(run_playbook, QUIET, ["signing_key"])
    assert "Readiness failed (signing_key)" in out
    assert "the backup signing key alias/ag-botkit-backup-signing in us-east-1 is not usable" in out
    assert "DisabledException" in out and "check the key is enabled" in out


def test_signing_key_of_the_wrong_kind_fails(run_playbook):
    out, _ = run_failing(run_playbook, QUIET, ["signing_key"], readiness_signing_key_id="alias/ag-botkit-backups")
    assert "not an ECC_NIST_P256 SIGN_VERIFY key" in out


def test_pgbackrest_check_fails_when_the_recorded_verify_found_damage(run_playbook, lab):
    """The verify that pgbackrest.yml runs in the background after a backup: a damaged result surfaces here."""
    record = Path(lab["lab_dir"]) / "pgbackrest" / "verified" / "ag_botkit.json"
    saved = record.read_text() if record.exists() else None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"format": "agbotkit-pgbackrest-verify/1", "stanza": "ag_botkit", "ok": False,
                                  "started": "2026-12-01T12:00:00Z", "problems": ["1 file(s) checksum invalid"],
                                  "sets": {}}))
    try:
        out, _ = run_failing(run_playbook, QUIET, ["pgbackrest"])
        assert "Readiness failed (pgbackrest_backup)" in out
        assert "the verification recorded after the last backup (2026-12-01T12:00:00Z) found the repository damaged: " \
               "1 file(s) checksum invalid" in out and "take a new full backup" in out
    finally:
        if saved is None:
            record.unlink()
        else:
            record.write_text(saved)

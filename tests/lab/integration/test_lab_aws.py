"""The lab's AWS: moto server + EKS handlers + fault layer (dev/lab/services/aws_server.py), seed, data faults.

Uses the running lab when .lab/lab.json exists; otherwise starts its own server on a free port with a
temporary lab dir and seeds it (so this file runs on its own:
`.venv/bin/pytest -q tests/lab/integration/test_lab_aws.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

ROOT = Path(__file__).resolve().parents[3]
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
PY = str(ROOT / ".venv" / "bin" / "python")
sys.path.insert(0, str(ROOT / "dev" / "lab"))

import aws_faults  # noqa: E402
import seed_aws  # noqa: E402

DB_ID = "ag-botkit-production-timescaledb"
SECRET_NAMES = ["ag-botkit/production/db-password", "ag-botkit/production/kill-switch-token",
                "ag-botkit/production/exchange-api-keys", "ag-botkit/production/dr-credentials"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_lab/ready", timeout=2) as resp:  # noqa: S310 - loopback http
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def aws_lab(tmp_path_factory):
    """{url, lab_dir, secrets, env, own}: the lab's AWS, seeded."""
    lab_json = LAB_DIR / "lab.json"
    proc = None
    if lab_json.exists():
        data = json.loads(lab_json.read_text())
        url = data["env"].get("AWS_URL") or f"http://127.0.0.1:{data['ports']['aws']}"
        lab_dir = Path(data.get("lab_dir", LAB_DIR))
        secrets_file = Path(data.get("secrets_file", lab_dir / "secrets.json"))
        if not _ready(url):
            pytest.fail(f"lab.json exists but the AWS server at {url} does not answer /_lab/ready")
    else:
        lab_dir = tmp_path_factory.mktemp("awslab")
        secrets_file = lab_dir / "secrets.json"
        url = f"http://127.0.0.1:{_free_port()}"
        log = open(lab_dir / "aws.log", "w")  # noqa: SIM115 - closed in teardown
        proc = subprocess.Popen([PY, str(ROOT / "dev/lab/services/aws_server.py"), "--port", url.rsplit(":", 1)[1],
                                 "--lab-dir", str(lab_dir)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 30
        while not _ready(url):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"aws_server.py did not come up: {(lab_dir / 'aws.log').read_text()[-2000:]}")
            time.sleep(0.2)
    env = dict(os.environ)
    env.update({"AWS_URL": url, "AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "LAB_DIR": str(lab_dir),
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{ROOT / '.venv/bin'}:{env.get('PATH', '')}"})
    env.pop("AWS_PROFILE", None)
    started = time.monotonic()
    seeded = subprocess.run([PY, str(ROOT / "dev/lab/seed_aws.py"), "--endpoint", url, "--lab-dir", str(lab_dir),
                             "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert seeded.returncode == 0, seeded.stderr
    info = {"url": url, "lab_dir": lab_dir, "env": env, "own": proc is not None,
            "seed": json.loads(seeded.stdout), "seed_seconds": time.monotonic() - started,
            "secrets": json.loads(secrets_file.read_text())}
    yield info
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        assert proc.returncode == 0, f"aws_server.py did not exit cleanly on SIGTERM: {proc.returncode}"


@pytest.fixture
def aws_fault(aws_lab):
    """aws_fault("aws.throttle", {...}) writes <lab-dir>/faults/<name>; all cleared after the test."""
    made: list[Path] = []

    def _on(name: str, options: dict | None = None) -> Path:
        made.append(aws_faults.fault_on(aws_lab["lab_dir"], name, options))
        return made[-1]

    yield _on
    for path in made:
        path.unlink(missing_ok=True)


@pytest.fixture
def client(aws_lab):
    def _client(service: str, region: str = "us-east-1", **retries):
        return boto3.client(service, region_name=region, endpoint_url=aws_lab["url"],
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries=retries or {"mode": "standard", "max_attempts": 5}))

    return _client


# ------------------------------------------------------------------------------------------------------ seed
def test_seed_is_idempotent(aws_lab):
    again = subprocess.run([PY, str(ROOT / "dev/lab/seed_aws.py"), "--endpoint", aws_lab["url"],
                            "--lab-dir", str(aws_lab["lab_dir"]), "--json"],
                           env=aws_lab["env"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["created"] == []
    assert result["updated"] == []
    assert len(result["existing"]) >= 40
    if aws_lab["own"]:
        assert len(aws_lab["seed"]["created"]) == len(result["existing"])
    state = json.loads((aws_lab["lab_dir"] / "aws_seed.json").read_text())
    assert len(state["eks_nodes"]) == 3
    assert state["dr_snapshots"]


def test_seeded_database_and_snapshots(client):
    db = client("rds").describe_db_instances(DBInstanceIdentifier=DB_ID)["DBInstances"][0]
    assert db["Engine"] == "postgres" and db["EngineVersion"].startswith("15")
    assert db["BackupRetentionPeriod"] >= 7 and db["LatestRestorableTime"]
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == "ag-botkit-production-db-subnets"
    primary = client("rds").describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]
    kinds = [s["SnapshotType"] for s in primary]
    assert kinds.count("manual") >= 2 and "automated" in kinds
    dr = client("rds", "us-west-2").describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]
    assert dr and all(s["DBSnapshotArn"].startswith("arn:aws:rds:us-west-2:") for s in dr)
    client("rds", "us-west-2").describe_db_subnet_groups(DBSubnetGroupName="ag-botkit-dr-db-subnets")


def test_restores_are_deletable(client):
    """Restore from the DR copy and to a point in time; like AWS, a restored instance is not delete-protected."""
    dr = client("rds", "us-west-2")
    snap = dr.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"][0]["DBSnapshotIdentifier"]
    name = f"lab-test-restore-{uuid.uuid4().hex[:6]}"
    made = dr.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=snap,
                                                   DBSubnetGroupName="ag-botkit-dr-db-subnets")["DBInstance"]
    assert made["Engine"] == "postgres" and made["DeletionProtection"] is False
    dr.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
    rds = client("rds")
    made = rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=DB_ID, TargetDBInstanceIdentifier=name,
                                                    UseLatestRestorableTime=True)["DBInstance"]
    assert made["DeletionProtection"] is False
    rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)


def test_seeded_secrets_match_secrets_json(aws_lab, client):
    values = aws_lab["secrets"]
    for key in ("db_password", "kill_switch_token", "exchange_api_key", "exchange_api_secret",
                "slack_webhook_token", "pagerduty_routing_key", "statuspage_api_key"):
        assert values[key] and "postgres" not in values[key].lower()
    for region in ("us-east-1", "us-west-2"):
        sm = client("secretsmanager", region)
        assert sm.get_secret_value(SecretId=SECRET_NAMES[0])["SecretString"] == values["db_password"]
        assert sm.get_secret_value(SecretId=SECRET_NAMES[1])["SecretString"] == values["kill_switch_token"]
        keys = json.loads(sm.get_secret_value(SecretId=SECRET_NAMES[2])["SecretString"])
        assert keys == {"api_key": values["exchange_api_key"], "api_secret": values["exchange_api_secret"]}
        assert json.loads(sm.get_secret_value(SecretId=SECRET_NAMES[3])["SecretString"])["db_password"] \
            == values["db_password"]
    status = client("secretsmanager").describe_secret(SecretId=SECRET_NAMES[3])["ReplicationStatus"]
    assert [r["Region"] for r in status] == ["us-west-2"]


def test_seeded_eks_ec2_route53(client):
    eks = client("eks")
    cluster = eks.describe_cluster(name="ag-botkit-production-eks")["cluster"]
    assert cluster["endpoint"].startswith("http://127.0.0.1:")
    ng = eks.describe_nodegroup(clusterName="ag-botkit-production-eks", nodegroupName="general")["nodegroup"]
    assert ng["updateConfig"] == {"maxUnavailable": 1}
    res = client("ec2").describe_instances(Filters=[{"Name": "tag:eks:nodegroup-name", "Values": ["general"]},
                                                    {"Name": "instance-state-name", "Values": ["running"]}])
    assert sum(len(r["Instances"]) for r in res["Reservations"]) == 3
    r53 = client("route53")
    zone = r53.list_hosted_zones_by_name(DNSName="ag-botkit.example.com")["HostedZones"][0]
    records = [r for r in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
               if r["Name"] == "api.ag-botkit.example.com."]
    by_role = {r["Failover"]: r for r in records}
    assert set(by_role) == {"PRIMARY", "SECONDARY"}
    assert "us-east-1" in by_role["PRIMARY"]["ResourceRecords"][0]["Value"] and by_role["PRIMARY"]["HealthCheckId"]
    assert "us-west-2" in by_role["SECONDARY"]["ResourceRecords"][0]["Value"]


# --------------------------------------------------------------------------------------------------- ansible
def test_ansible_modules_reach_both_regions(aws_lab):
    token = aws_lab["secrets"]["kill_switch_token"]
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,",
           "tests/lab/integration/playbooks/aws_smoke.yml",
           "-e", json.dumps({"expected_kill_switch_sha256": hashlib.sha256(token.encode()).hexdigest()})]
    run = subprocess.run(cmd, cwd=ROOT, env=aws_lab["env"], capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "failed=0" in run.stdout
    for key, value in aws_lab["secrets"].items():
        assert value not in run.stdout + run.stderr, f"secret {key} leaked into ansible output"


# ------------------------------------------------------------------------------------------------------- EKS
def test_eks_update_versions(client):
    eks = client("eks", "us-west-2")
    name = f"lab-test-eks-{uuid.uuid4().hex[:6]}"
    eks.create_cluster(name=name, version="1.28", roleArn="arn:aws:iam::123456789012:role/lab-test",
                       resourcesVpcConfig={"subnetIds": []})
    try:
        eks.create_nodegroup(clusterName=name, nodegroupName="general", nodeRole="arn:aws:iam::123456789012:role/n",
                             subnets=["subnet-1"], version="1.28", updateConfig={"maxUnavailablePercentage": 33})
        up = eks.update_cluster_version(name=name, version="1.29")["update"]
        assert up["type"] == "VersionUpdate" and up["status"] == "Successful"
        assert {"type": "Version", "value": "1.29"} in up["params"]
        assert eks.describe_update(name=name, updateId=up["id"])["update"]["status"] == "Successful"
        assert eks.describe_cluster(name=name)["cluster"]["version"] == "1.29"

        up = eks.update_nodegroup_version(clusterName=name, nodegroupName="general", force=True)["update"]
        assert up["status"] == "Successful"
        desc = eks.describe_update(name=name, updateId=up["id"], nodegroupName="general")["update"]
        assert desc["id"] == up["id"] and desc["status"] == "Successful"
        ng = eks.describe_nodegroup(clusterName=name, nodegroupName="general")["nodegroup"]
        assert ng["version"] == "1.29"
        assert ng["updateConfig"] == {"maxUnavailablePercentage": 33}
        assert up["id"] in eks.list_updates(name=name, nodegroupName="general")["updateIds"]
        with pytest.raises(ClientError) as err:
            eks.describe_update(name=name, updateId="no-such-update")
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        eks.delete_nodegroup(clusterName=name, nodegroupName="general")
        eks.delete_cluster(name=name)


# ---------------------------------------------------------------------------------------------------- faults
def test_throttle_then_retries_get_through(aws_lab, aws_fault, client):
    path = aws_fault("aws.throttle", {"service": "rds", "count": 3})
    rds = client("rds", mode="standard", max_attempts=5)
    out = rds.describe_db_instances(DBInstanceIdentifier=DB_ID)
    assert out["ResponseMetadata"]["RetryAttempts"] == 3
    assert not path.exists()
    # other services are untouched; without retries the throttling error is what the caller sees
    aws_fault("aws.throttle", {"service": "s3", "count": 2})
    assert client("rds", total_max_attempts=1).describe_db_instances()["DBInstances"]
    s3 = client("s3", total_max_attempts=1)
    with pytest.raises(ClientError) as err:
        s3.list_buckets()
    assert err.value.response["Error"]["Code"] == "SlowDown"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert json.loads((aws_lab["lab_dir"] / "faults/aws.throttle").read_text())["count"] == 1
    assert client("s3", mode="legacy", max_attempts=3).list_buckets()["ResponseMetadata"]["RetryAttempts"] == 1


def test_throttle_by_action_and_always(aws_fault, client):
    aws_fault("aws.throttle", {"service": "secretsmanager", "action": "GetSecretValue"})
    sm = client("secretsmanager", total_max_attempts=2)
    assert sm.describe_secret(SecretId=SECRET_NAMES[1])["Name"] == SECRET_NAMES[1]
    with pytest.raises(ClientError) as err:
        sm.get_secret_value(SecretId=SECRET_NAMES[1])
    assert err.value.response["Error"]["Code"] == "ThrottlingException"


def test_error_fault(aws_fault, client):
    aws_fault("aws.error", {"service": "eks", "count": 1})
    with pytest.raises(ClientError) as err:
        client("eks", total_max_attempts=1).list_clusters()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalError"
    assert client("eks", total_max_attempts=1).list_clusters()["clusters"]


def test_down_fault_region(aws_lab, aws_fault, client):
    aws_fault("aws.down", {"region": "us-east-1"})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client("rds", total_max_attempts=2).describe_db_instances()
    assert client("rds", "us-west-2", total_max_attempts=1).describe_db_snapshots()["DBSnapshots"]
    assert _ready(aws_lab["url"])  # readiness is never faulted
    aws_fault("aws.down", {"mode": "503"})
    with pytest.raises(ClientError) as err:
        client("s3", total_max_attempts=1).list_buckets()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


# ----------------------------------------------------------------------------------------------- data faults
def test_a_retry_of_a_call_already_done_gets_its_first_answer(aws_lab, client):
    """An SDK retry (same amz-sdk-invocation-id) of a change the lab already made is answered with the first answer,
    not done again; the same change asked by a new call is still refused as a duplicate (aws_server.RetryReplay)."""
    ec2 = client("ec2", "us-west-2", total_max_attempts=1)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName=f"retry-{uuid.uuid4().hex[:8]}", Description="retry test",
                                   VpcId=vpc)["GroupId"]
    invocation = str(uuid.uuid4())

    def same_invocation(request, **_kwargs):
        request.headers["amz-sdk-invocation-id"] = invocation
        request.headers["amz-sdk-request"] = "attempt=2; max=25"

    rule = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}
    try:
        ec2.meta.events.register("before-send.ec2.AuthorizeSecurityGroupIngress", same_invocation)
        first = ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[rule])
        again = ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[rule])
        assert [r["SecurityGroupRuleId"] for r in again["SecurityGroupRules"]] == \
            [r["SecurityGroupRuleId"] for r in first["SecurityGroupRules"]]
        ec2.meta.events.unregister("before-send.ec2.AuthorizeSecurityGroupIngress", same_invocation)
        rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])["SecurityGroupRules"]
        assert len([r for r in rules if not r["IsEgress"]]) == 1, rules
        with pytest.raises(ClientError) as err:   # a new call for the same rule: AWS's answer, a duplicate
            ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[rule])
        assert err.value.response["Error"]["Code"] == "InvalidPermission.Duplicate"
    finally:
        ec2.meta.events.unregister("before-send.ec2.AuthorizeSecurityGroupIngress", same_invocation)
        ec2.delete_security_group(GroupId=sg)
        ec2.delete_vpc(VpcId=vpc)


def test_corrupt_and_restore_object(aws_lab, client):
    s3 = client("s3")
    key = f"lab-tests/backup-{uuid.uuid4().hex[:8]}.sql.gz"
    body = secrets.token_bytes(4096)
    s3.put_object(Bucket="ag-botkit-backups", Key=key, Body=body, Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    good = hashlib.sha256(body).hexdigest()
    url, lab_dir = aws_lab["url"], aws_lab["lab_dir"]
    try:
        cli = [PY, str(ROOT / "dev/lab/aws_faults.py"), "--endpoint", url, "--lab-dir", str(lab_dir)]
        run = subprocess.run([*cli, "corrupt-object", "--bucket", "ag-botkit-backups", "--key", key, "--mode",
                              "truncate"], env=aws_lab["env"], capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        assert aws_faults.sha256_of(url, "ag-botkit-backups", key) != good
        obj = s3.get_object(Bucket="ag-botkit-backups", Key=key)
        assert obj["ContentLength"] == 2048 and obj["Metadata"]["sha256"] == good
        run = subprocess.run([*cli, "restore-object", "--bucket", "ag-botkit-backups", "--key", key],
                             env=aws_lab["env"], capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        assert aws_faults.sha256_of(url, "ag-botkit-backups", key) == good

        info = aws_faults.corrupt_object(url, lab_dir, "ag-botkit-backups", key, "alter")
        assert info["size"] == 4096 and info["corrupted_sha256"] != good
        assert aws_faults.sha256_of(url, "ag-botkit-backups", key) == info["corrupted_sha256"]
        assert aws_faults.restore_object(url, lab_dir, "ag-botkit-backups", key)["sha256"] == good
        assert aws_faults.sha256_of(url, "ag-botkit-backups", key) == good
    finally:
        versions = s3.list_object_versions(Bucket="ag-botkit-backups", Prefix=key).get("Versions", [])
        for v in versions:
            s3.delete_object(Bucket="ag-botkit-backups", Key=key, VersionId=v["VersionId"])


def test_delete_and_restore_dr_snapshots(aws_lab, client):
    rds = client("rds", "us-west-2")
    before = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]}
    assert before
    try:
        deleted = aws_faults.delete_snapshots(aws_lab["url"], "us-west-2")
        assert set(deleted) == before
        assert rds.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"] == []
        assert client("rds").describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]  # primary untouched
    finally:
        aws_faults.restore_snapshots(aws_lab["url"], aws_lab["lab_dir"], "us-west-2")
    after = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]}
    primary = client("rds").describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]
    assert {seed_aws.dr_copy_id(s["DBSnapshotIdentifier"]) for s in primary} <= after

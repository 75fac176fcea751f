"""Two-person rule on the lab: approval records in S3 (moto), signed and verified with KMS, identities from STS.

Three people, each with their own IAM user and access key in the lab: olivia (operator), alice (approver),
mallory (not on the approvers list). The gated steps are the real roles: the DNS change (dns_failover) and the
database switch (db_restore's swap step)."""

from __future__ import annotations

import base64
import json
import re
import uuid

import boto3
import pytest

BUCKET = "ag-botkit-approvals"
ZONE = "ag-botkit.example.com"
RECORD = "approval-test.ag-botkit.example.com"


@pytest.fixture(scope="module")
def people(lab):
    env = lab["env"]
    kw = {
        "endpoint_url": env["AWS_URL"],
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    out = {}
    for name in ("olivia", "alice", "mallory"):
        user = f"{name}-{uuid.uuid4().hex[:6]}"
        arn = iam.create_user(UserName=user)["User"]["Arn"]
        key = iam.create_access_key(UserName=user)["AccessKey"]
        kms = boto3.client(
            "kms", **dict(kw, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        )
        kid = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256", Description=f"approvals of {name}")[
            "KeyMetadata"
        ]["KeyId"]
        out[name] = {
            "arn": arn,
            "access_key": key["AccessKeyId"],
            "secret_key": key["SecretAccessKey"],
            "kms_key_id": kid,
            "kms": kms,
        }
    out["approvers"] = [
        {"name": n, "principal_arn": out[n]["arn"], "kms_key_id": out[n]["kms_key_id"]} for n in ("olivia", "alice")
    ]
    out["s3"] = s3
    out["route53"] = boto3.client("route53", **kw)
    return out


def as_(people, who, **extra):
    return dict(
        {
            "dr_aws_access_key": people[who]["access_key"],
            "dr_aws_secret_key": people[who]["secret_key"],
            "dr_require_approval": True,
            "dr_approvers": people["approvers"],
            "dr_approval_bucket": BUCKET,
        },
        **extra,
    )


def answer(people) -> str:
    zid = next(z["Id"] for z in people["route53"].list_hosted_zones()["HostedZones"] if z["Name"].rstrip(".") == ZONE)
    for rr in people["route53"].list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]:
        if rr["Name"].rstrip(".") == RECORD and rr.get("SetIdentifier") == "primary":
            return rr["ResourceRecords"][0]["Value"]
    return ""


def req_id(res) -> str:
    m = re.search(r"approval_request_id=([0-9a-f]{20})", res.stdout)
    assert m, res.stdout[-3000:]
    return m.group(1)


def test_dns_change_needs_a_second_person(people, run_playbook):
    target = f"dr-{uuid.uuid4().hex[:8]}.example.com"
    dns = {"gate_step": "dns", "dns_failover_record": RECORD, "dns_failover_recovery_target": target}

    # 1. the operator's run stops before the change and records the request
    res = run_playbook("tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "olivia", **dns))
    assert res.returncode != 0 and "needs an approval by a second person" in res.stdout, res.stdout[-3000:]
    rid = req_id(res)
    assert answer(people) != target
    assert people["s3"].get_object(Bucket=BUCKET, Key=f"approvals/requests/{rid}.json")

    # 2. the operator cannot approve their own run through approve.yml ...
    approve = {"approval_request_id": rid, "approval_reason": "test"}
    res = run_playbook("playbooks/approve.yml", extra_vars=as_(people, "olivia", **approve))
    assert res.returncode != 0 and "cannot approve it" in res.stdout, res.stdout[-3000:]
    # ... nor someone who is not an approver
    res = run_playbook("playbooks/approve.yml", extra_vars=as_(people, "mallory", **approve))
    assert res.returncode != 0 and "not a registered approver" in res.stdout, res.stdout[-3000:]

    # 3. nor by writing a record by hand that names alice, signed with the operator's own key
    grant_key = f"approvals/grants/{rid}.json"
    payload = {
        "version": 1,
        "request_id": rid,
        "action": "dns_change",
        "target": f"{RECORD} -> {target}",
        "incident_id": "",
        "operator_arn": people["olivia"]["arn"],
        "approver": "alice",
        "approver_arn": people["alice"]["arn"],
        "reason": "forged",
        "approved_at": "2026-01-01T00:00:00Z",
        "expires_at": "2099-01-01T00:00:00Z",
    }
    msg = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    sig = people["olivia"]["kms"].sign(
        KeyId=people["olivia"]["kms_key_id"], Message=msg, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
    )["Signature"]
    people["s3"].put_object(
        Bucket=BUCKET,
        Key=grant_key,
        Body=json.dumps({"payload": payload, "signature": base64.b64encode(sig).decode()}).encode(),
    )
    res = run_playbook("tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "olivia", **dns))
    assert res.returncode != 0 and "does not verify with alice's registered key" in res.stdout, res.stdout[-3000:]
    assert answer(people) != target

    # 4. alice approves with her own credentials; the operator's re-run changes DNS
    res = run_playbook("playbooks/approve.yml", extra_vars=as_(people, "alice", **approve))
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"alice approved request {rid}" in res.stdout
    # alice's approval does not open the step for alice herself (it names olivia's run)
    res = run_playbook("tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "alice", **dns))
    assert res.returncode != 0 and "needs an approval by a second person" in res.stdout, res.stdout[-3000:]
    res = run_playbook("tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "olivia", **dns))
    assert res.returncode == 0, res.stdout[-3000:]
    assert answer(people) == target


def test_database_switch_is_gated(people, run_playbook):
    res = run_playbook(
        "tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "olivia", gate_step="swap")
    )
    assert res.returncode != 0 and "db_swap of" in res.stdout and "needs an approval" in res.stdout, res.stdout[-3000:]
    assert "does not exist; run the restore" not in res.stdout  # db_swap never ran
    rid = req_id(res)
    res = run_playbook("playbooks/approve.yml", extra_vars=as_(people, "alice", approval_request_id=rid))
    assert res.returncode == 0, res.stdout[-3000:]
    # approved: the gate opens and the swap itself runs (and refuses: the restored database does not exist)
    res = run_playbook(
        "tests/integration/playbooks/approval_gate.yml", extra_vars=as_(people, "olivia", gate_step="swap")
    )
    assert res.returncode != 0 and "Ask an approver" not in res.stdout, res.stdout[-3000:]
    assert "Restored database ag_botkit_approval_test_missing does not exist" in res.stdout


def test_without_dr_require_approval_nothing_is_asked(people, run_playbook):
    res = run_playbook(
        "tests/integration/playbooks/approval_gate.yml",
        extra_vars=dict(
            as_(
                people,
                "olivia",
                gate_step="dns",
                dns_failover_record=RECORD,
                dns_failover_recovery_target="nogate.example.com",
            ),
            dr_require_approval=False,
        ),
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert answer(people) == "nogate.example.com"

"""Filters of the security-breach scenario: activity review, which workloads read a Secret, Secret redaction."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("breach", ROOT / "plugins/filter/breach.py")
breach = importlib.util.module_from_spec(spec)
spec.loader.exec_module(breach)


def ev(user, name, source="s3.amazonaws.com", ro=True, key="AKIA", t=1.0, err=""):
    return {"username": user, "event_name": name, "event_source": source, "read_only": ro, "access_key_id": key,
            "event_time": t, "error_code": err}


def test_activity_review_flags_principals_outside_the_allow_list():
    events = [ev("dr-automation", "ListBuckets", key="AK1", t=1),
              ev("dr-automation", "PutObject", ro=False, key="AK1", t=5),
              ev("intruder", "GetSecretValue", "secretsmanager.amazonaws.com", key="AK9", t=3),
              ev("intruder", "CreateAccessKey", "iam.amazonaws.com", ro=False, key="AK9", t=4, err="AccessDenied"),
              ev("", "ListBuckets", key="testing", t=2)]
    review = breach.activity_review(events, ["dr-automation", "testing"])
    assert review["total"] == 5
    assert review["flagged"] == ["intruder"]
    first = review["principals"][0]
    assert first["principal"] == "intruder" and not first["allowed"]
    assert first["calls"] == 2 and first["writes"] == 1 and first["errors"] == 1
    assert first["actions"] == {"iam:CreateAccessKey": 1, "secretsmanager:GetSecretValue": 1}
    assert (first["first"], first["last"]) == (3, 4)
    by = {p["principal"]: p for p in review["principals"]}
    assert by["testing"]["allowed"]  # no user name: the access key id is the principal, allowed by key
    assert by["dr-automation"]["calls"] == 2 and by["dr-automation"]["access_key_ids"] == ["AK1"]


def test_activity_review_allows_by_access_key_and_flags_everything_without_a_list():
    events = [ev("someone", "ListBuckets", key="AK1")]
    assert breach.activity_review(events, ["AK1"])["flagged"] == []
    assert breach.activity_review(events, [])["flagged"] == ["someone"]
    assert breach.activity_review([], ["x"]) == {"total": 0, "principals": [], "flagged": []}


def workload(kind, name, spec):
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns"}, "spec": {"template": {"spec": spec}}}


def test_secret_users_finds_every_kind_of_reference_and_nothing_else():
    ws = [
        workload("Deployment", "env", {"containers": [{"env": [{"name": "P", "valueFrom": {"secretKeyRef": {
            "name": "db", "key": "p"}}}]}]}),
        workload("StatefulSet", "envfrom", {"containers": [{"envFrom": [{"secretRef": {"name": "db"}}]}]}),
        workload("DaemonSet", "vol", {"containers": [{}], "volumes": [{"name": "v", "secret": {"secretName": "db"}}]}),
        workload("Deployment", "projected", {"containers": [{}], "volumes": [{"name": "v", "projected": {
            "sources": [{"secret": {"name": "db"}}]}}]}),
        workload("Deployment", "other", {"containers": [{"envFrom": [{"secretRef": {"name": "other"}},
                                                                     {"configMapRef": {"name": "db"}}]}]}),
        workload("Deployment", "none", {"containers": [{"env": [{"name": "X", "value": "db"}]}]}),
        {"kind": "Job", "metadata": {"name": "job"}, "spec": {"template": {"spec": {"containers": [
            {"envFrom": [{"secretRef": {"name": "db"}}]}]}}}},
    ]
    got = breach.secret_users(ws, ["db"])
    assert [(w["kind"], w["name"]) for w in got] == [
        ("DaemonSet", "vol"), ("Deployment", "env"), ("Deployment", "projected"), ("StatefulSet", "envfrom")]
    assert breach.secret_users(ws, ["other"])[0]["name"] == "other"
    assert breach.secret_users(ws, []) == []


def test_redact_secret_keeps_keys_and_hashes_not_values():
    value = "s3cr3t-value"
    secret = {"kind": "Secret", "metadata": {"name": "db", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": value, "keep": "1"}, "managedFields": [{}]},
        "data": {"P": base64.b64encode(value.encode()).decode()}, "stringData": {"Q": value}}
    out = breach.redact_secret(secret)
    digest = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    assert out["data"] == {"P": digest} and out["stringData"] == {"Q": digest}
    assert value not in str(out)
    assert out["metadata"]["annotations"] == {"keep": "1"} and "managedFields" not in out["metadata"]
    assert secret["data"]["P"] != digest  # the input is not changed


def test_activity_line():
    review = breach.activity_review([ev("intruder", "GetSecretValue", "secretsmanager.amazonaws.com")], ["x"])
    line = breach.activity_line(review["principals"][0])
    assert line == "intruder: 1 calls (0 writes, 0 errors), FLAGGED; secretsmanager:GetSecretValue x1"

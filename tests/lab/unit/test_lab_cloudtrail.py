"""The lab's CloudTrail stand-in (dev/lab/services/cloudtrail.py): what LookupEvents answers from the record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "dev/lab/services"))
import cloudtrail  # noqa: E402


@pytest.fixture
def rec(tmp_path):
    r = cloudtrail.Recorder(tmp_path)
    env = {"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "Boto3/1"}
    for i, (service, action, key, status) in enumerate([
            ("s3", "ListBuckets", "testing", 200), ("secretsmanager", "GetSecretValue", "AKIAX", 200),
            ("iam", "CreateAccessKey", "AKIAX", 403), ("s3", "PutObject", "testing", 200)]):
        r.add({"service": service, "action": action, "access_key": key, "region": "us-east-1"}, env, status,
              when=1000.0 + i)
    r.add({"service": "s3", "action": "ListBuckets", "access_key": "testing", "region": "us-west-2"}, env, 200,
          when=1010.0)
    return r


def test_newest_first_in_the_region_and_window(rec, tmp_path):
    got = rec.query({"StartTime": 1001, "EndTime": 1003}, region="us-east-1")["Events"]
    assert [e["EventName"] for e in got] == ["PutObject", "CreateAccessKey", "GetSecretValue"]
    detail = json.loads(got[1]["CloudTrailEvent"])
    assert detail["errorCode"] == "HTTP403" and detail["readOnly"] is False
    assert got[2]["ReadOnly"] == "true" and got[2]["EventSource"] == "secretsmanager.amazonaws.com"
    assert got[0]["Username"] == "root" and got[0]["AccessKeyId"] == "testing"  # no IAM user owns the key
    assert len((tmp_path / "cloudtrail.jsonl").read_text().splitlines()) == 5


def test_attribute_filter_paging_and_errors(rec):
    assert [e["EventName"] for e in rec.query({"LookupAttributes": [
        {"AttributeKey": "AccessKeyId", "AttributeValue": "AKIAX"}]}, "us-east-1")["Events"]] == [
        "CreateAccessKey", "GetSecretValue"]
    first = rec.query({"MaxResults": 3}, "us-east-1")
    second = rec.query({"MaxResults": 3, "NextToken": first["NextToken"]}, "us-east-1")
    assert len(first["Events"]) == 3 and len(second["Events"]) == 1 and "NextToken" not in second
    with pytest.raises(ValueError):
        rec.query({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"},
                                        {"AttributeKey": "Username", "AttributeValue": "b"}]})
    status, _h, body = rec.lookup(b'{"MaxResults": 99}', {"region": "us-east-1"})
    assert status == 400 and b"InvalidLookupAttributesException" in body

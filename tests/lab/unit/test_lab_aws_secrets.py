"""The lab's AWS server (dev/lab/services/aws_server.py): Secrets Manager answers AWSCURRENT when no stage is named,
also after a staged rotation (moto 5.2.5 kept answering the version the secret was created with)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "dev/lab/services"))
import aws_server  # noqa: E402

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")


@pytest.fixture
def sm(monkeypatch):
    from moto.secretsmanager.models import SecretsManagerBackend

    # record the original so the class is put back after the test
    monkeypatch.setattr(SecretsManagerBackend, "update_secret_version_stage",
                        SecretsManagerBackend.update_secret_version_stage)
    aws_server.fix_secretsmanager_default_version()
    aws_server.fix_secretsmanager_default_version()  # twice: wraps once
    with moto.mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")


def value(sm, **kw):
    return json.loads(sm.get_secret_value(SecretId="s", **kw)["SecretString"])["password"]


def test_a_staged_rotation_moves_what_a_read_without_stage_answers(sm):
    sm.create_secret(Name="s", SecretString=json.dumps({"password": "old"}))
    first = sm.describe_secret(SecretId="s")["VersionIdsToStages"]
    (old_id,) = first
    sm.put_secret_value(SecretId="s", ClientRequestToken="0" * 32 + "-new",
                        SecretString=json.dumps({"password": "new"}), VersionStages=["AWSPENDING"])
    assert value(sm) == "old"  # pending is not current yet
    sm.update_secret_version_stage(SecretId="s", VersionStage="AWSCURRENT", MoveToVersionId="0" * 32 + "-new",
                                   RemoveFromVersionId=old_id)
    assert value(sm) == "new" == value(sm, VersionStage="AWSCURRENT")
    assert value(sm, VersionStage="AWSPREVIOUS") == "old"
    # moving AWSCURRENT back (a rollback) moves the default read back too
    sm.update_secret_version_stage(SecretId="s", VersionStage="AWSCURRENT", MoveToVersionId=old_id,
                                   RemoveFromVersionId="0" * 32 + "-new")
    assert value(sm) == "old"


def test_other_stages_leave_the_default_read_alone(sm):
    sm.create_secret(Name="s", SecretString=json.dumps({"password": "old"}))
    sm.put_secret_value(SecretId="s", ClientRequestToken="1" * 32 + "-new", SecretString=json.dumps({"password": "p"}),
                        VersionStages=["AWSPENDING"])
    sm.update_secret_version_stage(SecretId="s", VersionStage="AWSPENDING", RemoveFromVersionId="1" * 32 + "-new")
    assert value(sm) == "old"

"""agbotkit.dr.s3_transfer against the lab's moto server, through a playbook whose only AWS settings come from
module_defaults for group/agbotkit.dr.aws (the lab's AWS_* endpoint variables are removed from its environment).

One module-scoped prefix per test run; each ansible-playbook run costs ~3 s of CPU, so the checks share runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
# a bucket of its own, without default encryption (the lab's backup bucket encrypts every object with the backup
# key, so there an object written without SSE headers would still look encrypted)
BUCKET = "agbotkit-test-s3-transfer"
KMS = "alias/ag-botkit-backups"
PLAYBOOK = """
- name: One s3_transfer call
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/agbotkit.dr.aws:
      endpoint_url: "{{ url }}"
      access_key: testing
      secret_key: testing
      region: us-east-1
  tasks:
    - name: Transfer
      agbotkit.dr.s3_transfer:
        mode: "{{ t.mode }}"
        bucket: "{{ t.bucket }}"
        prefix: "{{ t.prefix }}"
        files: "{{ t.files }}"
        last: "{{ t.last | default(omit) }}"
        src: "{{ t.src | default(omit) }}"
        dest: "{{ t.dest | default(omit) }}"
        kms_key_id: "{{ t.kms_key_id | default(omit) }}"
        multipart_threshold_mb: "{{ t.multipart_threshold_mb | default(omit) }}"
      register: out
      ignore_errors: true

    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{ out | to_json }}"
        dest: "{{ out_file }}"
        mode: "0600"
      check_mode: false
"""


@pytest.fixture(scope="module")
def transfer(lab, lab_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3_transfer")
    playbook = folder / "transfer.yml"
    playbook.write_text(PLAYBOOK)
    env = {k: v for k, v in lab_env.items() if k not in ("AWS_URL", "AWS_ENDPOINT_URL", "S3_URL", "EC2_URL")}
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.builtin.default"  # no incident timeline report for these runs
    runs = iter(range(1000))

    def _run(check: bool = False, **t) -> dict:
        out_file = folder / f"out-{next(runs)}.json"
        extra = {"url": lab["env"]["AWS_URL"], "out_file": str(out_file), "t": {"bucket": BUCKET, **t},
                 "ansible_python_interpreter": str(ROOT / ".venv/bin/python")}
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
               "-e", json.dumps(extra), *(["--check"] if check else [])]
        proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and out_file.exists(), (proc.stdout + proc.stderr)[-3000:]
        return json.loads(out_file.read_text())

    return _run


@pytest.fixture(scope="module")
def s3(lab):
    client = boto3.client("s3", endpoint_url=lab["env"]["AWS_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


@pytest.fixture(scope="module")
def backup(tmp_path_factory):
    """A small backup folder: two artifacts in a subfolder, one of 6 MiB (multipart at a 5 MiB threshold)."""
    src = tmp_path_factory.mktemp("backup")
    (src / "dump").mkdir()
    (src / "dump/toc.dat").write_bytes(b"toc " * 100)
    (src / "dump/3001.dat.gz").write_bytes(os.urandom(6 * 1024 * 1024))
    (src / "manifest.sig").write_bytes(b"signature")
    (src / "manifest.json").write_text('{"artifacts": {}}')
    return src


# the manifest first in files: only `last` puts it at the end
FILES = ["manifest.json", "manifest.sig", "dump/toc.dat", "dump/3001.dat.gz"]
LAST = ["manifest.sig", "manifest.json"]


def _prefix() -> str:
    return f"test-s3-transfer/{uuid.uuid4().hex[:12]}"


def _keys(s3, prefix) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", []))


def test_upload_is_encrypted_ordered_and_idempotent(transfer, s3, backup):
    prefix = _prefix()
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/plain", Body=b"x")
    assert "ServerSideEncryption" not in s3.head_object(Bucket=BUCKET, Key=f"{prefix}/plain")
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}/plain")
    up = dict(mode="upload", prefix=prefix, src=str(backup), files=FILES, last=LAST, kms_key_id=KMS,
              multipart_threshold_mb=5)

    planned = transfer(check=True, **up)
    assert planned.get("failed") is not True, planned
    assert planned["changed"] is True and planned["transferred"] == ["dump/toc.dat", "dump/3001.dat.gz",
                                                                      "manifest.sig", "manifest.json"]
    assert _keys(s3, prefix) == [], "check mode wrote objects"

    first = transfer(**up)
    assert first.get("failed") is not True, first
    assert first["changed"] is True and first["unchanged"] == []
    assert [f["name"] for f in first["files"]] == ["dump/toc.dat", "dump/3001.dat.gz", "manifest.sig", "manifest.json"]
    assert _keys(s3, prefix) == sorted(f"{prefix}/{n}" for n in FILES)
    for name in FILES:
        head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{name}")
        assert head["ServerSideEncryption"] == "aws:kms", (name, head)
        assert head["SSEKMSKeyId"].endswith("ag-botkit-backups"), (name, head)
        assert head["Metadata"]["sha256"] == hashlib.sha256((backup / name).read_bytes()).hexdigest()
    assert "-" in s3.head_object(Bucket=BUCKET, Key=f"{prefix}/dump/3001.dat.gz")["ETag"], "not a multipart upload"

    again = transfer(**up)
    assert again["changed"] is False and again["transferred"] == [], again
    assert again["unchanged"] == ["dump/toc.dat", "dump/3001.dat.gz", "manifest.sig", "manifest.json"]

    # one changed file of the same size: only it is written again
    (backup / "dump/toc.dat").write_bytes(b"TOC " * 100)
    try:
        changed = transfer(**up)
        assert changed["changed"] is True and changed["transferred"] == ["dump/toc.dat"], changed
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/dump/toc.dat")["Body"].read()
        assert body == b"TOC " * 100
        assert transfer(check=True, **up)["changed"] is False
    finally:
        (backup / "dump/toc.dat").write_bytes(b"toc " * 100)


def test_a_failed_artifact_leaves_no_manifest(transfer, s3, backup, fault):
    """The 6 MiB artifact goes in parts and its completion is refused (the lab names an UploadPart "CopyObject", so
    that is the call a fault can pick). The manifest comes first in files; written last all the same, it is not in
    the bucket after the failure. The message names the key."""
    prefix = _prefix()
    fault("aws.error", {"service": "s3", "action": "CompleteMultipartUpload", "code": "AccessDenied", "status": 403})
    out = transfer(mode="upload", prefix=prefix, src=str(backup), files=FILES, last=LAST, kms_key_id=KMS,
                   multipart_threshold_mb=5)
    assert out.get("failed") is True, out
    assert f"s3://{BUCKET}/{prefix}/dump/3001.dat.gz" in out["msg"] and "run again" in out["msg"], out["msg"]
    keys = _keys(s3, prefix)
    assert f"{prefix}/dump/toc.dat" in keys
    assert f"{prefix}/manifest.json" not in keys and f"{prefix}/manifest.sig" not in keys, keys


def test_download_writes_every_file_and_refuses_hostile_keys(transfer, s3, backup, tmp_path):
    prefix = _prefix()
    names = ["dump/toc.dat", "manifest.json"]
    for n in names:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{n}", Body=(backup / n).read_bytes())
    # what a hostile writer of the bucket could list
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/../escaped.txt", Body=b"owned")
    dest = tmp_path / "work"

    planned = transfer(check=True, mode="download", prefix=prefix, dest=str(dest), files=names)
    assert planned["changed"] is True and planned["transferred"] == names, planned
    assert not dest.exists(), "check mode wrote to dest"

    got = transfer(mode="download", prefix=prefix, dest=str(dest), files=names)
    assert got.get("failed") is not True, got
    for n in names:
        data = (dest / n).read_bytes()
        assert data == (backup / n).read_bytes()
        assert got["sha256"][n] == hashlib.sha256(data).hexdigest()
    assert transfer(mode="download", prefix=prefix, dest=str(dest), files=names)["changed"] is False

    # altered in storage (same size) while its metadata still claims the old sha256: downloaded again, and the
    # sha256 returned is the altered file's, so the restore's comparison with the manifest catches it
    good = (backup / "dump/toc.dat").read_bytes()
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/dump/toc.dat", Body=good.upper(),
                  Metadata={"sha256": hashlib.sha256(good).hexdigest()})
    altered = transfer(mode="download", prefix=prefix, dest=str(dest), files=names)
    assert altered["transferred"] == ["dump/toc.dat"], altered
    assert altered["sha256"]["dump/toc.dat"] == hashlib.sha256(good.upper()).hexdigest()
    assert (dest / "dump/toc.dat").read_bytes() == good.upper()

    for hostile in ("../escaped.txt", "/tmp/escaped.txt", "dump/../../escaped.txt"):
        out = transfer(mode="download", prefix=prefix, dest=str(tmp_path / "w2"), files=["dump/toc.dat", hostile])
        assert out.get("failed") is True, (hostile, out)
        assert hostile in out["msg"] and "Refusing" in out["msg"], out["msg"]
        assert not (tmp_path / "w2").exists(), "something was downloaded before the refusal"
        assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()

    # a symlink planted in dest that points out of it
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    out = transfer(mode="download", prefix=prefix, dest=str(dest), files=["link/manifest.json"])
    assert out.get("failed") is True and "outside" in out["msg"], out
    assert list(outside.iterdir()) == []

"""pgBackRest's S3 repository through the lab's TLS front (issue 15; docs/pgbackrest_repository.md).

Real pgBackRest 2.45 against the lab's moto server over HTTPS, its certificate signed by the lab's own CA
(dev/lab/services/lab_tls.py) and verified: no `verify-tls=n` anywhere. One module-scoped set-up
(playbooks/pgbackrest.yml with LAB_PGBACKREST_REPO=s3: stanza, a checked WAL segment, a full backup, a waited-for
verify), then what reads it back (info, the recorded verify, SSE-KMS on the stored objects, a restore rehearsal with
replay) and the refusals (a CA that did not sign the endpoint's certificate; a bucket that does not exist), each
saying what to do.

The lab's default repository stays posix: measured through the role on this machine, the S3 repository made the
full backup and the verify about ten times slower (docs/pgbackrest_repository.md, "Why the lab defaults to posix").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev" / "lab" / "services"))
import lab_tls  # noqa: E402

S3 = {"LAB_PGBACKREST_REPO": "s3"}
BUCKET = "ag-botkit-pgbackrest"   # dev/lab/seed_aws.py (no default encryption: SSE must come from pgBackRest)
PREFIX = "pgbackrest/"
STANZA = "ag_botkit"
KMS_ALIAS = "alias/ag-botkit-backups"
# refusals: pgBackRest retries a refused repository for io-timeout seconds (60 by default)
FAST_FAIL = {"pgbackrest_io_timeout": 5, "pgbackrest_check": False}


def output(res) -> str:
    return (res.stdout or "") + (res.stderr or "")


def s3_client(lab):
    """boto3 over the same TLS listener pgBackRest uses, verifying it with the lab CA."""
    env = lab["env"]
    return boto3.client("s3", endpoint_url=env["LAB_AWS_TLS_URL"], verify=env["LAB_CA_FILE"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def wipe_repository(lab) -> None:
    s3 = s3_client(lab)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def s3_dir(lab) -> Path:
    return Path(lab["lab_dir"]) / "pgbackrest-s3"


@pytest.fixture(scope="module")
def s3_repo(lab, run_playbook):
    """The lab primary archiving into a fresh S3 repository, with one full backup verified."""
    wipe_repository(lab)
    shutil.rmtree(s3_dir(lab), ignore_errors=True)
    t0 = time.monotonic()
    res = run_playbook("playbooks/pgbackrest.yml", env=S3,
                       extra_vars={"pgbackrest_backup_type": "full", "pgbackrest_verify_background": False})
    seconds = time.monotonic() - t0
    assert res.returncode == 0, output(res)[-4000:]
    print(f"\n[s3] playbooks/pgbackrest.yml (stanza, check, full backup, verify) on the S3 repository: {seconds:.1f} s")
    yield {"seconds": seconds}
    # the lab's archive_command pushes to every lab repository whose config exists: stop pushing to this one
    shutil.rmtree(s3_dir(lab), ignore_errors=True)
    wipe_repository(lab)


def pgbackrest_info(lab) -> dict:
    conf = s3_dir(lab) / "pgbackrest.conf"
    cmd = ["pgbackrest", f"--config={conf}", f"--stanza={STANZA}", "info", "--output=json"]
    cmd = ["runuser", "-u", "postgres", "--", *cmd]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(res.stdout)[0]


def test_config_is_s3_through_tls_verified_with_the_lab_ca_and_private(lab, s3_repo):
    conf = s3_dir(lab) / "pgbackrest.conf"
    text = conf.read_text()
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["repo1-type"] == "s3" and lines["repo1-s3-bucket"] == BUCKET
    assert lines["repo1-storage-verify-tls"] == "y"
    assert lines["repo1-storage-ca-file"] == lab["env"]["LAB_CA_FILE"]
    assert lines["repo1-storage-port"] == str(lab["ports"]["aws_tls"]) and lines["repo1-s3-uri-style"] == "path"
    assert lines["repo1-s3-kms-key-id"] == KMS_ALIAS
    st = conf.stat()
    assert oct(st.st_mode & 0o777) == "0o640", oct(st.st_mode)
    import pwd
    assert pwd.getpwuid(st.st_uid).pw_name == "postgres"


def test_backup_and_wal_are_in_the_bucket_and_info_and_verify_read_them_back(lab, s3_repo):
    info = pgbackrest_info(lab)
    assert info["status"]["code"] == 0, info["status"]
    fulls = [b for b in info["backup"] if b["type"] == "full"]
    assert fulls, info
    assert info["archive"] and info["archive"][0]["max"], "no WAL archived into the S3 repository"
    label = fulls[-1]["label"]
    keys = set()
    for page in s3_client(lab).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    assert f"{PREFIX}backup/{STANZA}/{label}/backup.manifest" in keys
    assert any(k.startswith(f"{PREFIX}archive/{STANZA}/15-1/") and k.endswith(".lz4") for k in keys), sorted(keys)[:20]
    # the role waited for `pgbackrest verify` (judged by its output) and recorded it
    record = json.loads((s3_dir(lab) / "verified" / f"{STANZA}.json").read_text())
    assert record["ok"] is True and label in record["sets"], record


def test_objects_are_stored_with_sse_kms_asked_by_pgbackrest(lab, s3_repo):
    """The bucket has no default encryption (dev/lab/seed_aws.py): SSE on the objects comes from repo1-s3-kms-key-id."""
    s3 = s3_client(lab)
    assert "ServerSideEncryptionConfiguration" not in _bucket_encryption(s3)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        keys += [o["Key"] for o in page.get("Contents", [])]
    wal = next(k for k in keys if k.startswith(f"{PREFIX}archive/{STANZA}/15-1/") and k.endswith(".lz4"))
    manifest = next(k for k in keys if k.endswith("/backup.manifest"))
    data = next(k for k in keys if "/pg_data/" in k)
    for key in (wal, manifest, data, f"{PREFIX}archive/{STANZA}/archive.info"):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head.get("ServerSideEncryption") == "aws:kms", (key, head.get("ServerSideEncryption"))
        assert KMS_ALIAS in (head.get("SSEKMSKeyId") or ""), (key, head.get("SSEKMSKeyId"))


def _bucket_encryption(s3) -> dict:
    try:
        return s3.get_bucket_encryption(Bucket=BUCKET)
    except s3.exceptions.ClientError:
        return {}


def test_restore_rehearsal_reads_the_s3_repository_replays_and_verifies(lab, s3_repo, run_playbook, tmp_path):
    t0 = time.monotonic()
    res = run_playbook("playbooks/backup_verify.yml", env=S3,
                       extra_vars={"backup_verify_paths": ["physical"], "dr_reports_dir": str(tmp_path)})
    seconds = time.monotonic() - t0
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    report = json.loads(sorted(tmp_path.glob("backup_verify_physical-*.json"))[-1].read_text())
    assert report["ok"] is True and report["tables"] >= 5 and report["repository_verified"] is True, report
    assert report["step_seconds"]["restore"] > 0
    print(f"\n[s3] backup_verify.yml physical (seal, restore, replay, verify) from S3: {seconds:.1f} s; "
          f"module seconds {report.get('module_seconds')}")


@pytest.fixture
def refusal_dir(lab):
    """A config folder of its own (not the one the lab's archive_command pushes with), readable by postgres."""
    base = Path(lab["lab_dir"]) / "pgbackrest-refusal"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(mode=0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_ca_that_did_not_sign_the_endpoint_is_refused_and_says_what_to_do(lab, run_playbook, refusal_dir):
    other_ca = lab_tls.make_untrusted_ca(refusal_dir / "other-ca.pem")
    base = refusal_dir / "pgbackrest"
    res = run_playbook("playbooks/pgbackrest.yml", env=S3, extra_vars={
        **FAST_FAIL, "dr_pgbackrest_s3_ca_file": str(other_ca), "dr_pgbackrest_base_dir": str(base),
        "dr_pgbackrest_config": str(base / "pgbackrest.conf")})
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert "unable to verify certificate presented by '127.0.0.1:" in out, out[-3000:]
    assert "TLS certificate is not trusted: set pgbackrest_repo_s3_ca_file" in out, out[-3000:]
    assert "LAB_CA_FILE" in out and "Do not turn verification off" in out
    assert "repo1-storage-verify-tls=n" not in (base / "pgbackrest.conf").read_text()


def test_a_missing_bucket_is_refused_and_says_what_to_do(lab, run_playbook, refusal_dir):
    base = refusal_dir / "pgbackrest"
    secret = "lab-s3-key-secret-never-printed-7f3a"   # moto does not check signatures: any secret key answers
    res = run_playbook("playbooks/pgbackrest.yml", env=S3, extra_vars={
        **FAST_FAIL, "dr_pgbackrest_bucket": "ag-botkit-no-such-bucket", "dr_pgbackrest_base_dir": str(base),
        "dr_pgbackrest_config": str(base / "pgbackrest.conf"), "dr_pgbackrest_s3_key_secret": secret})
    out = output(res)
    assert res.returncode != 0, out[-3000:]
    assert "NoSuchBucket" in out, out[-3000:]
    assert "the S3 bucket does not exist" in out and "pgbackrest_repo_s3_bucket" in out, out[-3000:]
    assert secret in (base / "pgbackrest.conf").read_text()
    assert secret not in out   # the keys are never printed (no_log on the tasks that hold them)

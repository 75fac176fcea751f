"""Event-Driven Ansible: extensions/eda/rulebooks/k8s_backup.yml, run by the real ansible-rulebook (Java 17,
drools) against the lab's Kubernetes API (?watch=true) and moto's S3. A burst of ConfigMap changes must give one
backup (debounced) that holds the last value, in S3 within a bounded time."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOUND_SECONDS = 90  # debounce (15 s) + one Kubernetes-only backup.yml run, with room for a slow machine
PREFIX = "kubernetes/"


@pytest.fixture(scope="module")
def rulebook_bin():
    res = subprocess.run(
        ["bash", "dev/scripts/eda_setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert res.returncode == 0, f"dev/scripts/eda_setup.sh failed:\n{res.stdout}\n{res.stderr}"
    return ROOT / ".venv-eda/bin/ansible-rulebook"


@pytest.fixture
def rulebook(rulebook_bin, lab, lab_env, tmp_path):
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(
        yaml.safe_dump(
            {
                "k8s_backup_kubeconfig": lab["env"]["KUBECONFIG"],
                "k8s_backup_context": "lab",
                "k8s_backup_namespace": "ag-botkit",
            }
        )
    )
    env = dict(lab_env)
    env["PATH"] = f"{ROOT / '.venv-eda/bin'}:{env['PATH']}"  # ansible-playbook comes from .venv (after it)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    env["LAB_DIR"] = str(Path(lab["lab_dir"]))
    log = tmp_path / "rulebook.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(rulebook_bin),
                "-r",
                "extensions/eda/rulebooks/k8s_backup.yml",
                "-i",
                "inventories/lab",
                "--vars",
                str(vars_file),
                "-v",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while "Waiting for" not in log.read_text() and "Calling main in agbotkit.dr.k8s_watch" not in log.read_text():
        assert proc.poll() is None, f"ansible-rulebook exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"ansible-rulebook did not start:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    time.sleep(3)  # the watch is opened right after the source starts
    yield proc, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_changed_configmap_is_in_s3_within_the_bound(rulebook, lab):
    proc, log = rulebook
    kw = {
        "endpoint_url": lab["env"]["AWS_URL"],
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **kw)
    before = {o["Key"] for o in s3.list_objects_v2(Bucket="ag-botkit-backups", Prefix=PREFIX).get("Contents", [])}
    kubectl = ["kubectl", "--kubeconfig", lab["env"]["KUBECONFIG"], "--context", "lab", "-n", "ag-botkit"]
    values = [f"eda-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    started = time.monotonic()
    for v in values:  # a burst: three changes within a second or two
        res = subprocess.run(
            [
                *kubectl,
                "patch",
                "configmap",
                "minibot-config",
                "--type",
                "merge",
                "-p",
                json.dumps({"data": {"EDA_TEST_MARK": v}}),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr

    found, new = None, set()
    while time.monotonic() - started < BOUND_SECONDS and not found:
        assert proc.poll() is None, f"ansible-rulebook exited:\n{log.read_text()[-3000:]}"
        time.sleep(2)
        new = {
            o["Key"] for o in s3.list_objects_v2(Bucket="ag-botkit-backups", Prefix=PREFIX).get("Contents", [])
        } - before
        for key in new:
            if values[-1] in s3.get_object(Bucket="ag-botkit-backups", Key=key)["Body"].read().decode():
                found = key
    took = time.monotonic() - started
    assert found, (
        f"no backup with the changed ConfigMap within {BOUND_SECONDS} s (new objects {sorted(new)}):\n"
        f"{log.read_text()[-4000:]}"
    )
    print(f"changed ConfigMap in s3://ag-botkit-backups/{found} after {took:.1f} s")

    # debounced: the burst of three changes gave one backup run. Without the throttle the rule fires three times and
    # ansible-rulebook runs the actions one after the other (it prints a run's output when the run ends), so wait
    # as long as one more run would take: a second run would have uploaded another backup and printed its play.
    one_run = max(took - 15, 10)
    time.sleep(min(one_run * 1.3 + 5, 90))
    text = log.read_text()
    runs = text.count("PLAY [Manual Backup Creation]")
    assert runs == 1, f"a burst of 3 changes gave {runs} backup runs:\n{text[-4000:]}"
    new = {o["Key"] for o in s3.list_objects_v2(Bucket="ag-botkit-backups", Prefix=PREFIX).get("Contents", [])} - before
    assert new == {found}, f"a burst of 3 changes gave {len(new)} backups: {sorted(new)}"
    # the event carried no Secret or ConfigMap content
    assert values[0] not in log.read_text()

"""Plan §2 against the lab: backups, the restore that never risks the live database, and its faults.

Every fault test checks three things: the playbook fails, its message says what happened and
what to do, and the live database is exactly as it was (same database, same contents).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import psycopg
import pytest
import requests
from runbook_checks import forget_run, run_state, slack_messages

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev" / "lab"))
import aws_faults  # noqa: E402

BUCKET = "ag-botkit-backups"
DB = "ag_botkit"
TABLES = ("markets", "orders", "fills", "positions", "metrics")


# --------------------------------------------------------------------------- helpers


def pg(lab, db="postgres"):
    env = lab["env"]
    return psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"],
                           dbname=db, autocommit=True, connect_timeout=5)


def live_state(lab) -> dict:
    """Identity and contents of the live database: its oid and comment, and per table count + hash."""
    with pg(lab) as c:
        oid, comment = c.execute("SELECT oid, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
                                 "WHERE datname = %s", (DB,)).fetchone()
        dbs = sorted(r[0] for r in c.execute("SELECT datname FROM pg_database"))
    out = {"oid": oid, "comment": comment, "databases": dbs}
    with pg(lab, DB) as c:
        for t in TABLES:
            out[t] = c.execute(f"SELECT count(*), coalesce(sum(hashtext(x::text)::numeric), 0) FROM {t} x").fetchone()
        out["indexes"] = sorted(r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname='public'"))
    return out


def kill_switch(lab, action):
    token = lab["secrets"]["kill_switch_token"]
    r = requests.post(f"{lab['env']['LAB_MINIBOT_URL']}/api/kill-switch/{action}", json={"reason": "test"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()


def s3(lab):
    return boto3.client("s3", endpoint_url=lab["env"]["AWS_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def sign_manifest(lab, body: bytes) -> bytes:
    """A manifest.sig for body, signed with the lab's signing key (as a holder of kms:Sign could)."""
    digest = hashlib.sha256(body).digest()
    kms = boto3.client("kms", endpoint_url=lab["env"]["AWS_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    sig = kms.sign(KeyId="alias/ag-botkit-backup-signing", Message=digest, MessageType="RAW",
                   SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    return json.dumps({"format": 1, "key_id": "alias/ag-botkit-backup-signing", "algorithm": "ECDSA_SHA_256",
                       "digest": "sha256:" + digest.hex(), "signature": base64.b64encode(sig).decode()}).encode()


def output(res) -> str:
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def backup(lab, run_playbook):
    """A fresh backup of the live database (the bot halted for it, so later states compare exactly)."""
    kill_switch(lab, "reset")
    res = run_playbook("playbooks/backup.yml")
    assert res.returncode == 0, output(res)[-3000:]
    keys = [o["Key"] for o in s3(lab).list_objects_v2(Bucket=BUCKET, Prefix="database/")["Contents"]]
    bid = sorted({k.split("/")[1] for k in keys if k.endswith("/manifest.json")})[-1]
    manifest = json.loads(s3(lab).get_object(Bucket=BUCKET, Key=f"database/{bid}/manifest.json")["Body"].read())
    return {"id": bid, "manifest": manifest, "keys": [k for k in keys if k.startswith(f"database/{bid}/")]}


@pytest.fixture(scope="module", autouse=True)
def fresh_run(lab):
    """This module's runs start their own restore run: a failed one another module left would be resumed, with its
    older incident time (the data-loss window is measured from it)."""
    forget_run(lab, f"db_restore-{DB}")


@pytest.fixture
def halted(lab):
    """The bot halted so that the live database holds still; trading again afterwards."""
    kill_switch(lab, "trigger")
    time.sleep(0.3)
    yield
    kill_switch(lab, "reset")


@pytest.fixture(autouse=True)
def drop_leftover_restores(lab):
    yield
    with pg(lab) as c:
        for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
                                 (f"{DB}_restore_%", f"{DB}_verify_%")).fetchall():
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def restore(run_playbook, backup_id, *args, **extra):
    ev = {"db_restore_backup_id": backup_id, **extra}
    return run_playbook("playbooks/db_restore.yml", *args, extra_vars=ev)


# --------------------------------------------------------------------------- backups


def test_backup_manifest_matches_the_database_and_artifacts(lab, backup):
    m = backup["manifest"]
    assert set(m["tables"]) == {f"public.{t}" for t in TABLES}
    assert m["tables"]["public.orders"]["rows"] > 0
    assert m["tables"]["public.orders"]["checksum"] is not None
    assert m["schema_hash"].startswith("sha256:")
    # every artifact of the manifest was uploaded, encrypted with KMS, and nothing else is missing
    uploaded = {k.split("/", 2)[2] for k in backup["keys"]}
    assert set(m["artifacts"]) | {"manifest.json", "manifest.sig"} == uploaded
    head = s3(lab).head_object(Bucket=BUCKET, Key=f"database/{backup['id']}/manifest.json")
    assert head["ServerSideEncryption"] == "aws:kms"


def test_backup_also_stores_kubernetes_resources_without_printing_secrets(lab, backup):
    key = f"kubernetes/k8s-backup-{backup['id']}.yaml"
    body = s3(lab).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert "kind: Deployment" in body and "name: minibot" in body
    assert "resourceVersion" not in body  # server-set fields stripped so it can be re-applied


def test_check_mode_changes_nothing(lab, run_playbook, backup, halted):
    before_keys = {o["Key"] for o in s3(lab).list_objects_v2(Bucket=BUCKET)["Contents"]}
    before = live_state(lab)
    for pb, extra in (("playbooks/backup.yml", {}),
                      ("playbooks/db_restore.yml", {"db_restore_backup_id": backup["id"], "db_restore_confirm": DB}),
                      ("playbooks/backup_verify.yml", {"db_restore_backup_id": backup["id"]})):
        res = run_playbook(pb, "--check", extra_vars=extra)
        assert res.returncode == 0, f"{pb}: " + output(res)[-3000:]
    assert {o["Key"] for o in s3(lab).list_objects_v2(Bucket=BUCKET)["Contents"]} == before_keys
    assert live_state(lab) == before
    state = requests.get(f"{lab['env']['LAB_MINIBOT_URL']}/api/kill-switch", timeout=5).json()["state"]
    assert state == "halted"  # as the fixture left it: check mode posted nothing


def test_backup_verify_passes_then_fails_loudly_on_an_altered_object(lab, run_playbook, backup):
    res = run_playbook("playbooks/backup_verify.yml", extra_vars={"db_restore_backup_id": backup["id"]})
    assert res.returncode == 0, output(res)[-3000:]
    assert "restored and verified" in res.stdout
    dump_key = next(k for k in backup["keys"] if k.endswith(".dat.gz"))
    aws_faults.corrupt_object(lab["env"]["AWS_URL"], Path(lab["lab_dir"]), BUCKET, dump_key, mode="alter")
    try:
        res = run_playbook("playbooks/backup_verify.yml", extra_vars={"db_restore_backup_id": backup["id"]})
    finally:
        aws_faults.restore_object(lab["env"]["AWS_URL"], Path(lab["lab_dir"]), BUCKET, dump_key)
    assert res.returncode != 0
    assert "failed its sha256 check" in output(res) and dump_key.split("/", 2)[2] in output(res)
    with pg(lab) as c:  # the throwaway was never created or was dropped
        assert not c.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s", (f"{DB}_verify_%",)).fetchall()


# --------------------------------------------------------------------------- faults in the backup


@pytest.mark.parametrize("mode", ["truncate", "alter"])
def test_damaged_backup_object_is_refused_before_anything_changes(lab, run_playbook, backup, halted, mode):
    key = next(k for k in backup["keys"] if k.endswith("toc.dat"))
    before = live_state(lab)
    aws_faults.corrupt_object(lab["env"]["AWS_URL"], Path(lab["lab_dir"]), BUCKET, key, mode=mode)
    try:
        res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    finally:
        aws_faults.restore_object(lab["env"]["AWS_URL"], Path(lab["lab_dir"]), BUCKET, key)
    assert res.returncode != 0
    assert "failed its sha256 check" in output(res) and "dump/toc.dat" in output(res)
    assert "db_restore_backup_id" in output(res)  # says what to do next
    assert live_state(lab) == before


def test_missing_manifest_is_refused(lab, run_playbook, backup, halted):
    client = s3(lab)
    key = f"database/{backup['id']}/manifest.json"
    saved = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    before = live_state(lab)
    client.delete_object(Bucket=BUCKET, Key=key)
    try:
        res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=saved, ServerSideEncryption="aws:kms",
                          SSEKMSKeyId="alias/ag-botkit-backups")
    assert res.returncode != 0
    assert "has no manifest.json" in output(res)
    assert live_state(lab) == before


def test_backup_lacking_a_table_the_manifest_names_stops_before_the_swap(lab, run_playbook, backup, halted):
    client = s3(lab)
    key = f"database/{backup['id']}/manifest.json"
    saved = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    forged = json.loads(saved)
    forged["tables"]["public.trades_archive"] = {"rows": 42, "checksum": "1", "max_time": None, "time_column": None}
    before = live_state(lab)
    body = json.dumps(forged).encode()
    sig_key = f"database/{backup['id']}/manifest.sig"
    saved_sig = client.get_object(Bucket=BUCKET, Key=sig_key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body)
    client.put_object(Bucket=BUCKET, Key=sig_key, Body=sign_manifest(lab, body))  # signed: the data check must catch it
    try:
        res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=saved)
        client.put_object(Bucket=BUCKET, Key=sig_key, Body=saved_sig)
    assert res.returncode != 0
    assert "does not match backup" in output(res) and "trades_archive" in output(res)
    assert "live database ag_botkit is untouched" in output(res)
    after = live_state(lab)
    kept = set(after.pop("databases")) - set(before.pop("databases"))
    assert kept == {f"{DB}_restore_{backup['id'].lower()}"}  # the failed restore is kept for inspection
    assert after == before


def test_database_going_away_mid_restore_then_rerun_completes(lab, run_playbook, backup, halted):
    before = live_state(lab)
    target = f"{DB}_restore_{backup['id'].lower()}"
    stop = threading.Event()
    restarted = threading.Event()

    def restart_when_loading():
        data = Path(lab["lab_dir"]) / "pg" / "data"
        while not stop.is_set():
            try:
                with pg(lab) as c:
                    row = c.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname=%s",
                                    (target,)).fetchone()
            except psycopg.OperationalError:
                row = None
            if row and row[0] and "status=loading" in row[0]:
                subprocess.run(["runuser", "-u", "postgres", "--", f"{lab['env']['LAB_PG_BIN']}/pg_ctl", "-D",
                                str(data), "-l", str(data / "server.log"), "-m", "immediate", "-w", "restart"],
                               check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
                restarted.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=restart_when_loading, daemon=True)
    watcher.start()
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB, db_restore_jobs=1)
    stop.set()
    watcher.join(timeout=30)
    if not restarted.is_set():
        pytest.fail("the restore finished before the database could be taken away: " + output(res)[-2000:])
    assert res.returncode != 0
    assert "re-run" in output(res)
    mid = live_state(lab)  # the server came back; the live database is untouched,
    leftovers = set(mid.pop("databases")) - set(before["databases"])
    assert leftovers <= {target}  # and the half-done restore (marked loading) is the only addition
    assert mid == {k: v for k, v in before.items() if k != "databases"}
    kill_switch(lab, "trigger")  # the bot reconnects after a restart; hold it still for the re-run
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    assert res.returncode == 0, output(res)[-3000:]
    after = live_state(lab)
    assert after["oid"] != before["oid"] and f"backup={backup['id']} status=complete" in after["comment"]
    for t in TABLES:
        assert after[t][0] == backup["manifest"]["tables"][f"public.{t}"]["rows"]


# --------------------------------------------------------------------------- faults in the kill switch


@pytest.mark.parametrize(("fault_name", "options", "extra", "says"), [
    ("minibot.down", {}, {}, "503"),
    ("minibot.error", {}, {}, "500"),
    ("minibot.slow", {"seconds": 30}, {"db_restore_kill_switch_timeout": 2, "db_restore_kill_switch_retries": 0},
     "no answer"),
    (None, {}, {"dr_kill_switch_token": "not-the-token"}, "token rejected"),
    ("minibot.ignore_trigger", {}, {}, "written"),
])
def test_kill_switch_failure_stops_before_the_database_is_touched(lab, run_playbook, backup, fault, fault_name,
                                                                   options, extra, says):
    kill_switch(lab, "reset")
    with pg(lab) as c:
        c.execute(f"COMMENT ON DATABASE {DB} IS NULL")  # the live database did not come from this backup
        before_oid = c.execute("SELECT oid FROM pg_database WHERE datname=%s", (DB,)).fetchone()[0]
    if fault_name:
        fault(fault_name, options)
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB, **extra)
    out = output(res)
    assert res.returncode != 0
    assert "The database was not touched" in out and says in out
    assert lab["secrets"]["kill_switch_token"] not in out
    with pg(lab) as c:
        assert c.execute("SELECT oid FROM pg_database WHERE datname=%s", (DB,)).fetchone()[0] == before_oid
        assert not c.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s", (f"{DB}_restore_%",)).fetchall()


# --------------------------------------------------------------------------- the whole procedure


def test_restore_without_confirmation_stops_before_the_swap(lab, run_playbook, backup, halted):
    with pg(lab) as c:
        c.execute(f"COMMENT ON DATABASE {DB} IS NULL")
    before = live_state(lab)
    res = restore(run_playbook, backup["id"])
    assert res.returncode != 0
    assert "-e db_restore_confirm=ag_botkit" in output(res)
    after = live_state(lab)
    assert {k: v for k, v in after.items() if k != "databases"} == {k: v for k, v in before.items() if k != "databases"}


def test_restore_swaps_keeps_the_damaged_copy_and_resumes_trading(lab, run_playbook, backup, written_report):
    kill_switch(lab, "reset")
    with pg(lab) as c:
        c.execute(f"COMMENT ON DATABASE {DB} IS NULL")  # whatever ran before, the live db is not this backup's
    with pg(lab, DB) as c:
        c.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE status <> 'filled' LIMIT 50)")
        c.execute("DROP INDEX IF EXISTS metrics_name_time_idx")
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB, db_restore_resume_trading=True)
    assert res.returncode == 0, output(res)[-3000:]
    state = requests.get(f"{lab['env']['LAB_MINIBOT_URL']}/api/kill-switch", timeout=5).json()
    assert state["state"] == "trading"
    report = written_report(output(res), "db_restore")
    assert report["backup_id"] == backup["id"] and report["swapped"] is True and report["verified"] is True
    assert float(report["data_loss_window_seconds"]) > 0
    assert set(report["step_seconds"]) >= {"assess", "kill_switch", "fetch", "restore", "verify", "swap"}
    with pg(lab) as c:
        quarantined = c.execute("SELECT datname FROM pg_database WHERE datname = %s",
                                (report["quarantined_as"],)).fetchone()
    assert quarantined, "the damaged database must be kept"
    with pg(lab, report["quarantined_as"]) as c:
        assert not c.execute("SELECT 1 FROM pg_indexes WHERE indexname='metrics_name_time_idx'").fetchall()
    with pg(lab, DB) as c:
        n0 = c.execute("SELECT count(*) FROM orders").fetchone()[0]
        time.sleep(1.5)
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] > n0  # writes resumed on the restored db
    # a second run changes nothing (the incident's notifications and log are per run, so they are left out here)
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB, db_restore_resume_trading=True,
                  dr_incident_enabled=False)
    assert res.returncode == 0
    assert "changed=0" in res.stdout


# --------------------------------------------------------------------------- the runbook (roles/runbook)


def test_failed_step_notifies_and_a_rerun_resumes(lab, run_playbook, backup, fault):
    """A step that fails marks the run failed and notifies the incident's channels, naming the step and saying the live
    database was not swapped; the same command again resumes that run (same incident, same declaration time) and
    completes it. The failure is the cheapest refusal there is: the bot cannot halt (503), nothing was touched."""
    forget_run(lab, f"db_restore-{DB}")
    kill_switch(lab, "reset")
    # damage, so that the assessment asks for a restore: a live database that still holds everything the backup holds
    # (e.g. after the swap test restored it) is "nothing to do", and the kill-switch step would never run
    with pg(lab, DB) as c:
        c.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE status <> 'filled' LIMIT 5)")
    with pg(lab) as c:
        oid = c.execute("SELECT oid FROM pg_database WHERE datname=%s", (DB,)).fetchone()[0]
    fault("minibot.down", {})
    res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    out = " ".join(output(res).split())
    assert res.returncode != 0
    stopped = "Database restore stopped in step kill_switch: The halt of trading could not be confirmed"
    assert stopped in out, out[-3000:]
    with pg(lab) as c:
        assert c.execute("SELECT oid FROM pg_database WHERE datname=%s", (DB,)).fetchone()[0] == oid
    state = run_state(lab, f"db_restore-{DB}")
    assert state["status"] == "failed" and state["completed"] == ["assess"]
    failed = [m for m in slack_messages(lab, state["incident_id"]) if "FAILED in step kill_switch" in m]
    assert failed and "could not be confirmed" in failed[0] and f"The live database {DB} was not swapped" in failed[0]
    assert lab["secrets"]["kill_switch_token"] not in "".join(failed)

    (Path(lab["lab_dir"]) / "faults" / "minibot.down").unlink()
    try:
        res = restore(run_playbook, backup["id"], db_restore_confirm=DB)
    finally:
        kill_switch(lab, "reset")
    assert res.returncode == 0, output(res)[-3000:]
    assert f"Resuming {state['incident_id']}" in " ".join(res.stdout.split())
    after = run_state(lab, f"db_restore-{DB}")
    assert after["status"] == "completed" and after["incident_id"] == state["incident_id"]
    assert after["declared_at"] == state["declared_at"]   # RTO counts from the first attempt
    assert after["completed"] == ["assess", "kill_switch", "restore", "verify", "swap", "resume"]
    with pg(lab) as c:
        comment = c.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname=%s",
                            (DB,)).fetchone()[0]
    assert f"backup={backup['id']} status=complete" in comment

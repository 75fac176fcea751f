"""The physical path (pgBackRest, issue 15) against the lab's real PostgreSQL: point-in-time restore into a new data
directory, verification, the switch with the old data directory kept, and its faults.

Every fault test checks that the playbook fails, says what happened and what to do, and that the live cluster is
exactly as it was (same data directory, same contents). The lab stays usable: the one test that switches leaves
the lab primary running on the restored data directory (same cluster, next timeline), archiving and trading.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import lz4.frame
import psycopg
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
DB = "ag_botkit"
TABLES = ("markets", "orders", "fills", "positions", "metrics")


def pg(lab, db=DB, port=None):
    env = lab["env"]
    return psycopg.connect(host=env["PGHOST"], port=port or env["PGPORT"], user=env["PGUSER"],
                           password=env["PGPASSWORD"], dbname=db, autocommit=True, connect_timeout=5)


def live_state(lab) -> dict:
    with pg(lab) as c:
        out = {"data_dir": c.execute("SHOW data_directory").fetchone()[0],
               "started": str(c.execute("SELECT pg_postmaster_start_time()").fetchone()[0])}
        for t in TABLES:
            out[t] = c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    return out


def kill_switch(lab, action):
    token = lab["secrets"]["kill_switch_token"]
    r = requests.post(f"{lab['env']['LAB_MINIBOT_URL']}/api/kill-switch/{action}", json={"reason": "test"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()


def output(res) -> str:
    return res.stdout + res.stderr


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pgb_dir(lab) -> Path:
    return Path(lab["lab_dir"]) / "pgbackrest"


def restore_dir(lab) -> Path:
    return Path(lab["lab_dir"]) / "pg" / "data.pitr"


def state_file(lab) -> Path:
    return Path(lab["lab_dir"]) / "pg" / "agbotkit-physical-restore.json"


@pytest.fixture(scope="module")
def stanza(lab, run_playbook):
    """pgBackRest configured on the lab primary, archiving, with one full backup (shared by the module)."""
    kill_switch(lab, "reset")
    # the verify after the backup waits here (not in the background): its record is written before any test
    # corrupts a repository file, so no verify runs while a file is damaged (bench_pitr.py runs it in the background)
    res = run_playbook("playbooks/pgbackrest.yml", extra_vars={"pgbackrest_backup_type": "full",
                                                               "pgbackrest_verify_background": False})
    assert res.returncode == 0, output(res)[-3000:]
    time.sleep(1.5)  # a few trades after the backup finished: a target after it exists
    yield
    kill_switch(lab, "reset")
    for old in (Path(lab["lab_dir"]) / "pg").glob("data.replaced-*"):
        shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leftover_restore(lab, run_playbook):
    """Each test starts without a restore beside the live cluster (never the live one)."""
    yield
    pitr = restore_dir(lab)
    if (pitr / "postmaster.pid").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", f"{lab['env']['LAB_PG_BIN']}/pg_ctl", "-D", str(pitr),
                        "-m", "immediate", "stop"], check=False, capture_output=True)
    shutil.rmtree(pitr, ignore_errors=True)
    st = state_file(lab)
    if st.exists() and json.loads(st.read_text()).get("status") != "switched":
        st.unlink()


def physical(run_playbook, target: str, *args, **extra):
    ev = {"dr_incident_enabled": False, "db_restore_target_time": target, "db_restore_path": "physical"}
    ev.update(extra)
    return run_playbook("playbooks/db_restore.yml", *args, extra_vars=ev)


def record_file(lab) -> Path:
    return pgb_dir(lab) / "verified" / "ag_botkit.json"


def wait_for_record(lab, label: str, timeout: float = 300) -> dict:
    """The verification pgbackrest.yml runs in the background after a backup, once it covers set `label`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            rec = json.loads(record_file(lab).read_text())
            if label in rec.get("sets", {}):
                return rec
        except (OSError, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f"no verification record covering {label} after {timeout} s ({record_file(lab)})")


def newest_full(lab) -> Path:
    return sorted((pgb_dir(lab) / "repo" / "backup" / "ag_botkit").glob("*F"))[-1]


def damage(victim: Path) -> None:
    """Change a few bytes in the middle of a backed-up file and store it again as a valid lz4 frame (same length,
    valid frame checksum): only pgBackRest's own checksum of the file's content can tell. Overwriting bytes of the
    compressed frame instead gave a different error from run to run (a frame checksum or a decoding error, depending
    on what the bytes land on), so a test of the message could fail by chance."""
    content = bytearray(lz4.frame.decompress(victim.read_bytes()))
    middle = len(content) // 2
    content[middle:middle + 9] = bytes(b ^ 0xFF for b in content[middle:middle + 9])
    victim.write_bytes(lz4.frame.compress(bytes(content), content_checksum=True))


def test_verify_catches_a_corrupted_repository_file_and_the_restore_refuses(lab, stanza, run_playbook, tmp_path):
    """No recorded verification (an empty record folder): the restore runs pgbackrest verify, which catches it."""
    before = live_state(lab)
    backup = sorted((pgb_dir(lab) / "repo" / "backup" / "ag_botkit").glob("*F"))[-1]
    victim = max((backup / "pg_data" / "base").rglob("*.lz4"), key=lambda p: p.stat().st_size)
    saved = victim.read_bytes()
    try:
        damage(victim)
        res = physical(run_playbook, now_iso(), db_restore_physical_verify_record_dir=str(tmp_path / "none"))
        out = output(res)
        assert res.returncode != 0
        assert "pgbackrest verify found the repository damaged" in out, out[-3000:]
        assert "checksum invalid" in out and "refusing to restore" in out
        assert not restore_dir(lab).exists()
        assert live_state(lab)["data_dir"] == before["data_dir"]
        assert live_state(lab)["started"] == before["started"]
    finally:
        victim.write_bytes(saved)


def test_file_corrupted_after_the_recorded_verify_is_still_refused_before_the_switch(lab, stanza, run_playbook):
    """The restore trusts the background verify's record (it runs no verify of its own), yet a file damaged after that
    record stops it before any switch: the restore checks what it reads (pgBackRest's checksum of each file)."""
    backup = newest_full(lab)
    rec = wait_for_record(lab, backup.name)
    assert rec["ok"] is True
    before = live_state(lab)
    victim = max((backup / "pg_data" / "base").rglob("*.lz4"), key=lambda p: p.stat().st_size)
    saved = victim.read_bytes()
    try:
        damage(victim)
        res = physical(run_playbook, now_iso())
        out = output(res)
        assert res.returncode != 0, out[-3000:]
        assert "pgbackrest verify found" not in out     # the record was used: no verify ran
        # the lz4 frame decodes cleanly: pgBackRest's checksum of the restored file stops it
        assert "does not match expected checksum" in out and "Physical restore of backup set" in out, out[-3000:]
        assert "The live cluster" in out and "is untouched" in out
        st = json.loads(state_file(lab).read_text()) if state_file(lab).exists() else {}
        assert st.get("status") != "switched"
        assert live_state(lab)["data_dir"] == before["data_dir"]
        assert live_state(lab)["started"] == before["started"]
    finally:
        victim.write_bytes(saved)


def restore_module(lab, run_playbook, tmp_path, label: str) -> tuple[object, dict]:
    """agbotkit.dr.pgbackrest_restore alone (no switch): restore set `label` beside the live cluster."""
    d, env = Path(lab["lab_dir"]), lab["env"]
    out = tmp_path / "result.json"
    pb = tmp_path / "restore.yml"
    pb.write_text(f"""---
- hosts: localhost
  gather_facts: false
  tasks:
    - agbotkit.dr.pgbackrest_restore:
        stanza: ag_botkit
        config: {d}/pgbackrest/pgbackrest.conf
        db_user: {env['PGUSER']}
        pg_bin: {env['LAB_PG_BIN']}
        data_dir: {d}/pg/data
        restore_dir: {restore_dir(lab)}
        state_file: {tmp_path}/state.json
        port: {int(env['PGPORT']) + 1}
        socket_dir: {d}/pg/run
        set: {label}
        verify_record_dir: {d}/pgbackrest/verified
      register: r
    - ansible.builtin.copy: {{content: "{{{{ r.verify | to_json }}}}", dest: {out}, mode: "0600"}}
""")
    res = run_playbook(pb)
    return res, (json.loads(out.read_text()) if out.exists() else {})


def test_recorded_verify_is_used_and_a_changed_manifest_is_verified_again(lab, stanza, run_playbook, tmp_path):
    """A clean record for the set: no verify at restore. The record's manifest digest differs: verify runs again."""
    backup = newest_full(lab)
    wait_for_record(lab, backup.name)
    res, verify = restore_module(lab, run_playbook, tmp_path, backup.name)
    assert res.returncode == 0, output(res)[-3000:]
    assert verify["source"] == "record" and f"backup set {backup.name} verified clean at" in verify["record"]
    saved = record_file(lab).read_text()
    rec = json.loads(saved)
    rec["sets"][backup.name]["manifest_sha256"] = "0" * 64     # as if the manifest were rewritten after the verify
    record_file(lab).write_text(json.dumps(rec))
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{lab['env']['LAB_PG_BIN']}/pg_ctl", "-D",
                        str(restore_dir(lab)), "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(restore_dir(lab), ignore_errors=True)
        res, verify = restore_module(lab, run_playbook, tmp_path, backup.name)
        assert res.returncode == 0, output(res)[-3000:]
        assert verify["source"] == "verify" and verify["ok"] is True
        assert "changed since it was verified" in verify["record_problem"]
    finally:
        record_file(lab).write_text(saved)


def test_target_before_the_oldest_backup_is_a_clear_error(lab, stanza, run_playbook):
    before = live_state(lab)
    res = physical(run_playbook, "2020-01-01T00:00:00Z")
    out = output(res)
    assert res.returncode != 0
    assert "before the oldest backup set" in out and "db_restore_path=logical" in out, out[-3000:]
    assert not restore_dir(lab).exists()
    assert live_state(lab)["started"] == before["started"]


def test_failing_archive_command_stops_the_restore_and_says_so(lab, stanza, run_playbook, fault):
    before = live_state(lab)
    fault("pg.archive_fail")
    res = physical(run_playbook, now_iso(), db_restore_physical_seal_timeout=6)
    out = output(res)
    assert res.returncode != 0
    assert "did not reach the archive" in out and "archive_command is failing" in out, out[-3000:]
    assert not restore_dir(lab).exists()
    assert live_state(lab)["started"] == before["started"]


def test_database_going_away_mid_replay_leaves_the_live_one_and_a_rerun_completes(lab, stanza, run_playbook):
    before = live_state(lab)
    target = now_iso()
    pidfile = restore_dir(lab) / "postmaster.pid"
    killed = []

    def kill_when_replaying():
        end = time.monotonic() + 240
        while time.monotonic() < end and not killed:
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (OSError, ValueError, IndexError):
                time.sleep(0.02)

    t = threading.Thread(target=kill_when_replaying, daemon=True)
    t.start()
    res = physical(run_playbook, target)
    t.join(timeout=5)
    out = output(res)
    assert killed, "the restored cluster was never seen starting"
    assert res.returncode != 0
    assert "live cluster" in out and "untouched" in out, out[-3000:]
    assert live_state(lab)["started"] == before["started"]
    # the re-run removes the half-done restore and completes, up to the confirmation gate
    res = physical(run_playbook, target)
    out = output(res)
    assert "verified and running on port" in out and "db_restore_confirm=ag_botkit" in out, out[-3000:]
    recorded = json.loads(state_file(lab).read_text())
    assert recorded["status"] == "verified"
    assert live_state(lab)["started"] == before["started"]


def test_switch_refuses_a_restore_not_recorded_as_verified(lab, stanza, run_playbook, tmp_path):
    st = tmp_path / "state.json"
    st.write_text(json.dumps({"status": "ready", "backup": {"label": "X"}, "target_time": ""}))
    pb = tmp_path / "switch.yml"
    pb.write_text(f"""---
- hosts: localhost
  gather_facts: false
  tasks:
    - agbotkit.dr.pg_cluster_switch:
        data_dir: {lab['lab_dir']}/pg/data
        restore_dir: {tmp_path}/nothing
        state_file: {st}
        backup_label: X
""")
    res = run_playbook(pb)
    assert res.returncode != 0
    assert "recorded as 'ready', not verified: refusing to switch" in output(res), output(res)[-2000:]


def test_pitr_to_before_a_bad_deploy_switches_and_the_lab_keeps_working(lab, stanza, run_playbook, written_report):
    """The bot trades, a bad deploy rewrites rows at T, restore to T: rows before T as they were, none after T."""
    kill_switch(lab, "reset")
    time.sleep(2)
    with pg(lab) as c:
        with c.transaction():
            good = {r[0]: r[1:] for r in c.execute("SELECT id, status, qty FROM orders")}
            target = c.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(0.5)
        c.execute("UPDATE orders SET strategy = 'bad-deploy', qty = qty * 2")
    time.sleep(1.5)
    target_iso = target.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    started = datetime.now(UTC)  # rows the bot writes after the restore's switch are newer than this
    t0 = time.monotonic()
    res = physical(run_playbook, target_iso, db_restore_confirm=DB, db_restore_resume_trading=True)
    wall = time.monotonic() - t0
    out = output(res)
    assert res.returncode == 0, out[-4000:]
    result = written_report(out, "db_restore")
    assert result["path"] == "physical" and result["swapped"] is True and result["verified"] is True
    kept = Path(result["old_data_dir_kept_as"])
    assert kept.is_dir() and (kept / "PG_VERSION").exists()
    with pg(lab) as c:
        restored = {r[0]: r[1:] for r in c.execute("SELECT id, status, qty FROM orders WHERE created_at < %s",
                                                   (target,))}
        after = c.execute("SELECT count(*) FROM orders WHERE created_at >= %s AND strategy <> 'bad-deploy' "
                          "AND created_at < %s", (target, started)).fetchone()[0]
        bad = c.execute("SELECT count(*) FROM orders WHERE strategy = 'bad-deploy'").fetchone()[0]
        tli = c.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    assert bad == 0, "the bad deploy's rows came back"
    assert after == 0, "rows written after the target exist"
    # every order that existed before T is back as it was (a handful may have changed between the read and T)
    changed = [k for k in good if restored.get(k) != good[k]]
    assert len(changed) <= 3 and len(restored) >= len(good) - 3, (len(changed), len(restored), len(good))
    assert tli >= 2
    # the lab keeps working on the switched cluster: trading resumed (the playbook confirmed it), and WAL is archived
    with pg(lab) as c:
        n0 = c.execute("SELECT count(*) FROM orders").fetchone()[0]
        time.sleep(2)
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] > n0
        wal = c.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        for _ in range(30):
            if (c.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").fetchone()[0] or "") >= wal:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the switched cluster does not archive WAL")
    # idempotent: the same command again changes nothing
    res = physical(run_playbook, target_iso, db_restore_confirm=DB)
    assert res.returncode == 0 and "nothing to do" in output(res), output(res)[-3000:]
    print(f"physical restore to T through Ansible: {wall:.1f} s wall")


def test_readiness_reports_a_failing_archive_command(lab, stanza, run_playbook, fault):
    # this lab's own report folder (lanes run side by side in one checkout and share reports/)
    report_dir = Path(lab["lab_dir"]).resolve() / "readiness-reports"
    checks = {"readiness_checks": ["wal_archive", "pgbackrest", "kill_switch"], "dr_incident_enabled": False,
              "readiness_report_dir": str(report_dir)}
    res = run_playbook("playbooks/readiness.yml", extra_vars=checks)
    assert res.returncode == 0, output(res)[-3000:]
    fault("pg.archive_fail")
    with pg(lab, "postgres") as c:
        c.execute("SELECT txid_current()")
        c.execute("SELECT pg_switch_wal()")
        for _ in range(60):
            ok_t, fail_t = c.execute("SELECT last_archived_time, last_failed_time FROM pg_stat_archiver").fetchone()
            if fail_t and (not ok_t or fail_t > ok_t):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the archiver never failed with the fault on")
    res = run_playbook("playbooks/readiness.yml", extra_vars=checks)
    out = output(res)
    assert res.returncode != 0
    assert "Readiness failed (wal_archive)" in out and "archive_command is failing" in out, out[-3000:]
    report = json.loads(sorted(report_dir.glob("readiness-*.json"))[-1].read_text())
    wal = next(c for c in report["checks"] if c["check"] == "wal_archive")
    assert wal["ok"] is False and wal["failing"] is True and wal["seconds"] is not None


def test_backup_verify_rehearses_the_physical_path_and_times_it(lab, stanza, run_playbook, written_report):
    before = live_state(lab)
    res = run_playbook("playbooks/backup_verify.yml", extra_vars={"backup_verify_paths": ["physical"]})
    out = output(res)
    assert res.returncode == 0, out[-3000:]
    report = written_report(out, "backup_verify_physical")
    assert report["ok"] is True and report["tables"] >= 5 and report["repository_verified"] is True
    assert set(report["module_seconds"]) >= {"verify", "restore", "replay"} and report["step_seconds"]["restore"] > 0
    assert not (Path(lab["lab_dir"]) / "pg" / "data.rehearsal").exists()
    assert live_state(lab)["started"] == before["started"]

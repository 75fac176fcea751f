"""Pure decisions of the physical restore path: pgbackrest info/verify parsing, backup-set choice, RPO arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils import _pgbackrest as b  # noqa: E402

T0 = 1796127600  # 2026-12-01T12:20:00Z


def info_doc(*sets, stanza="ag_botkit"):
    backups = [{"label": label, "type": kind, "timestamp": {"start": start, "stop": stop}, "error": err,
                "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
                "info": {"size": 100, "repository": {"delta": 40}}} for label, kind, start, stop, err in sets]
    return [{"name": "other", "status": {"code": 0}},
            {"name": stanza, "status": {"code": 0, "message": "ok"}, "backup": backups,
             "archive": [{"min": "000000010000000000000001", "max": "00000002000000000000000A"}],
             "db": [{"system-id": 7, "version": "15"}]}]


SETS = [("20261201-122000F", "full", T0, T0 + 6, False),
        ("20261201-122000F_20261201-130000I", "incr", T0 + 2400, T0 + 2402, False),
        ("20261201-122000F_20261201-133000I", "incr", T0 + 4200, T0 + 4203, True)]


def test_parse_info_picks_the_stanza_and_orders_sets():
    info = b.parse_info(info_doc(*reversed(SETS)), "ag_botkit")
    assert [x["label"] for x in info["backups"]] == [s[0] for s in SETS]
    assert info["backups"][0]["stop"] == "2026-12-01T12:20:06Z"
    assert info["archive_max"] == "00000002000000000000000A"
    assert info["status_code"] == 0


def test_parse_info_missing_stanza_says_what_to_do():
    with pytest.raises(b.PgBackRestError, match="stanza 'nope' is not in the repository"):
        b.parse_info(info_doc(*SETS), "nope")
    with pytest.raises(b.PgBackRestError, match="JSON list"):
        b.parse_info({"name": "ag_botkit"}, "ag_botkit")


def test_choose_newest_set_that_finished_before_the_target():
    backups = b.parse_info(info_doc(*SETS), "ag_botkit")["backups"]
    assert b.choose_backup(backups, "2026-12-01T13:00:03Z")["label"] == SETS[1][0]
    # finished one second after the target: only the full can reach it
    assert b.choose_backup(backups, "2026-12-01T13:00:01Z")["label"] == SETS[0][0]
    # the newest set has an error: never chosen, latest means the newest good one
    assert b.choose_backup(backups, None)["label"] == SETS[1][0]
    assert b.choose_backup(backups, "2026-12-01T14:00:01+01:00")["label"] == SETS[0][0]  # 13:00:01Z


def test_target_before_the_oldest_backup_is_a_clear_error():
    backups = b.parse_info(info_doc(*SETS), "ag_botkit")["backups"]
    with pytest.raises(b.TargetBeforeBackupsError, match="before the oldest backup set .*20261201-122000F"):
        b.choose_backup(backups, "2026-12-01T12:20:05Z")
    with pytest.raises(b.TargetBeforeBackupsError, match="after the target time"):
        b.choose_backup(backups, "2026-12-01T12:30:00Z", label=SETS[1][0])
    with pytest.raises(b.PgBackRestError, match="not in the repository"):
        b.choose_backup(backups, None, label="nope")
    with pytest.raises(b.PgBackRestError, match="no usable backup set"):
        b.choose_backup([], None)


# pgBackRest 2.45's own output (lab, this machine): the second with one byte range of a backup file overwritten;
# its exit code was 0 both times
VERIFY_OK = """stanza: ag_botkit
status: ok
  archiveId: 15-1, total WAL checked: 17, total valid WAL: 17
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261201-153906F, status: valid, total files checked: 1368, total valid files: 1368
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
"""
VERIFY_BAD = """stanza: ag_botkit
status: error
  archiveId: 15-1, total WAL checked: 17, total valid WAL: 17
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261201-153906F, status: invalid, total files checked: 1368, total valid files: 1367
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
"""


def test_verify_is_judged_by_its_output():
    assert b.parse_verify(VERIFY_OK)["ok"] is True
    bad = b.parse_verify(VERIFY_BAD)
    assert bad["ok"] is False
    assert bad["statuses"] == ["error"]
    assert bad["error_counts"] == {"checksum invalid": 1}
    assert "backup 20261201-153906F: invalid" in bad["problems"]
    # a WAL segment missing from the archive, stanza status alone still says ok: the counts fail it
    assert b.parse_verify(VERIFY_OK.replace("missing: 0", "missing: 2", 1))["ok"] is False
    # nothing printed proves nothing
    assert b.parse_verify("")["ok"] is False
    assert b.parse_verify("P00 INFO: verify command end: completed successfully")["ok"] is False


def test_archive_rpo_arithmetic_and_failures():
    now = "2026-12-01T12:00:30Z"
    good = b.archive_rpo({"archive_mode": "on", "last_archived_time": "2026-12-01 12:00:20+00"}, now, 60)
    assert good["ok"] and good["seconds"] == 10.0
    old = b.archive_rpo({"archive_mode": "on", "last_archived_time": "2026-12-01T11:58:00Z"}, now, 60)
    assert not old["ok"] and old["seconds"] == 150.0 and "over the RPO objective" in old["message"]
    failing = b.archive_rpo({"archive_mode": "on", "last_archived_time": "2026-12-01T12:00:20Z",
                             "last_failed_time": "2026-12-01T12:00:25Z"}, now, 3600)
    assert not failing["ok"] and failing["failing"] and "archive_command is failing" in failing["message"]
    recovered = b.archive_rpo({"archive_mode": "on", "last_archived_time": "2026-12-01T12:00:26Z",
                               "last_failed_time": "2026-12-01T12:00:25Z"}, now, 60)
    assert recovered["ok"] and not recovered["failing"]
    off = b.archive_rpo({"archive_mode": "off"}, now, 60)
    assert not off["ok"] and "archive_mode is 'off'" in off["message"]
    never = b.archive_rpo({"archive_mode": "on"}, now, 60)
    assert not never["ok"] and "no WAL segment" in never["message"]


def test_recovery_reached():
    ok = b.recovery_reached("2026-12-01T12:00:30Z", "2026-12-01 12:00:29.5+00", "2026-12-01T11:00:00Z")
    assert ok["ok"] and ok["lag_seconds"] == 0.5
    assert not b.recovery_reached("2026-12-01T12:00:30Z", "2026-12-01T12:00:31Z", "2026-12-01T11:00:00Z")["ok"]
    assert b.recovery_reached("2026-12-01T12:00:30Z", None, "2026-12-01T12:00:00Z")["lag_seconds"] == 30.0


def test_argv_runs_as_the_database_user():
    argv = b.pgbackrest_argv("pgbackrest", "/c.conf", "s", "restore", {"type": "time", "target-exclusive": True,
                                                                       "set": "", "delta": False})
    assert argv == ["pgbackrest", "--config=/c.conf", "--stanza=s", "--type=time", "--target-exclusive",
                    "--no-delta", "restore"]
    wrapped = b.as_user_argv("some-other-user", ["x"])
    assert wrapped[-1] == "x" and "some-other-user" in wrapped


def test_backup_age_filter():
    import importlib.util
    spec = importlib.util.spec_from_file_location("readiness", ROOT / "plugins/filter/readiness.py")
    r = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(r)
    backups = b.parse_info(info_doc(*SETS), "ag_botkit")["backups"]
    fresh = r.backup_age(backups, "2026-12-01T13:10:00Z", 3600)
    assert fresh["ok"] and fresh["newest"] == SETS[1][0] and fresh["seconds"] == 598.0   # the set with an error skipped
    stale = r.backup_age(backups, "2026-12-01T15:00:03Z", 3600)
    assert not stale["ok"] and "backup schedule is not running" in stale["message"]
    assert not r.backup_age([], "2026-12-01T15:00:00Z", 3600)["ok"]
    assert set(r.FilterModule().filters()) == {"archive_rpo", "backup_age", "rds_readiness",
                                               "recovery_region_readiness", "route53_readiness"}


def test_verify_record_covers_only_a_clean_verify_of_this_set_with_this_manifest():
    clean = b.make_verify_record("ag_botkit", {"ok": True, "statuses": ["ok"], "problems": []},
                                 {"20261201-120000F": "a" * 64}, T0, 25.5)
    ok, why = b.record_covers(clean, "ag_botkit", "20261201-120000F", "a" * 64)
    assert ok and "verified clean at 2026-12-01T12:20:00Z" in why
    assert b.record_covers(clean, "ag_botkit", "20261201-120000F", "b" * 64) == (
        False, "the manifest of backup set 20261201-120000F changed since it was verified (2026-12-01T12:20:00Z)")
    assert not b.record_covers(clean, "ag_botkit", "20261201-130000F_20261201-131000I", "a" * 64)[0]
    assert not b.record_covers(clean, "other", "20261201-120000F", "a" * 64)[0]
    assert not b.record_covers(clean, "ag_botkit", "20261201-120000F", "")[0]
    assert b.record_covers(None, "ag_botkit", "20261201-120000F", "a" * 64) == (False, "no recorded verification")
    bad = {"ok": False, "statuses": ["error"], "problems": ["1 file(s) checksum invalid"]}
    damaged = b.make_verify_record("ag_botkit", bad, {"20261201-120000F": "a" * 64}, T0, 25.5)
    ok, why = b.record_covers(damaged, "ag_botkit", "20261201-120000F", "a" * 64)
    assert not ok and "found the repository damaged: 1 file(s) checksum invalid" in why

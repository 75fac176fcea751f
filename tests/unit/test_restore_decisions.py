"""Pure decisions of issue 9: whether the live database already holds a backup, what db_load may replace, what
a swap needs, backup ids and their order, retention order, and the strict manifest check."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
from ansible_collections.agbotkit.dr.plugins.filter import backups  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils import _backup, _manifest, _restore  # noqa: E402

BID = "20261125T120000Z"
COMPLETE = f"agbotkit.dr restore backup={BID} status=complete"


def integrity(mismatches=(), tables=5, since=None, failed=False, msg=None):
    out = {"mismatches": [{"message": m} for m in mismatches], "rows_since": since or {},
           "compared": {"tables": tables, "rows": 100, "checksum_tables": tables, "amcheck_relations": 3}}
    if failed:
        out = {"failed": True, "msg": msg or "boom"}
    return out


def test_in_sync_needs_the_marker_and_data_that_holds_the_backup():
    v = _restore.live_verdict(BID, "ag_botkit", COMPLETE, integrity(since={"public.fills": 4}))
    assert v["in_sync"] and "nothing to do" in v["message"] and "4 row(s) written since are kept" in v["message"]


@pytest.mark.parametrize(("comment", "result", "says"), [
    (COMPLETE, integrity(["public.fills: 7 row(s) missing"], since={"public.fills": 3}), "would lose 3 row(s)"),
    (COMPLETE, integrity(tables=0), "nothing was checked"),
    (COMPLETE, integrity(failed=True, msg="no connection"), "could not be checked against backup 20261125T120000Z: no"),
    (COMPLETE, {}, "nothing was checked"),
    ("", integrity(), "does not carry the marker"),
    (f"agbotkit.dr restore backup={BID} status=loading", integrity(), "does not carry the marker"),
    ("agbotkit.dr restore backup=20261124T000000Z status=complete", integrity(), "does not carry the marker"),
])
def test_not_in_sync(comment, result, says):
    v = _restore.live_verdict(BID, "ag_botkit", comment, result)
    assert not v["in_sync"] and says in v["message"]


def state(comment, name="t"):
    return {"name": name, "comment": comment, "marker": _restore.parse_marker(comment)}


@pytest.mark.parametrize(("comment", "action"), [
    (None, "refuse"),
    (COMPLETE, "done"),
    (f"agbotkit.dr restore backup={BID} status=loading", "replace"),
    ("agbotkit.dr restore backup=20261124T000000Z status=loading", "refuse"),
    ("agbotkit.dr restore backup=20261124T000000Z status=complete", "refuse"),
    (f"agbotkit.dr quarantine backup={BID} status=kept", "refuse"),
])
def test_db_load_replaces_only_its_own_unfinished_target(comment, action):
    assert _restore.load_target_action(state(comment), BID)[0] == action
    assert _restore.load_target_action(None, BID) == ("create", None)


GOOD = {"ok": True, "database": "r", "backup_id": BID, "compared": {"tables": 3}}


@pytest.mark.parametrize(("verification", "says"), [
    ({}, "no verification"),
    ({"skipped": True}, "no verification"),
    (dict(GOOD, ok=False, mismatches=[{"message": "x differs"}]), "x differs"),
    (dict(GOOD, database="other"), "database other"),
    (dict(GOOD, backup_id="20200101T000000Z"), "against backup 20200101T000000Z"),
    (dict(GOOD, compared={"tables": 0}), "compared no table"),
])
def test_swap_needs_this_runs_passing_verification(verification, says):
    assert says in _restore.verification_problem(verification, "r", BID)
    assert _restore.verification_problem(GOOD, "r", BID) is None


@pytest.mark.parametrize("bid", ["pre-migration", "20261125T120000Z-", "20261325T120000Z", "../x", "20261125T120000ZZ",
                                 "20261125T120000Z-Upper", "", None])
def test_invalid_backup_ids(bid):
    assert _backup.backup_id_problem(bid)


def test_order_is_by_time_and_names_never_win():
    ids = ["pre-migration", "20261125T120000Z", "20261125T120000Z-pre-migration", "20261124T235959Z", "zzz"]
    assert _backup.newest_first(ids) == ["20261125T120000Z-pre-migration", "20261125T120000Z", "20261124T235959Z"]


def test_retention_deletes_the_manifest_first_and_ignores_names():
    keys = []
    for bid in ["20200101T000000Z", "20261125T000000Z"] + [f"pre-migration-{i}" for i in range(7)]:
        keys += [f"database/{bid}/dump/toc.dat", f"database/{bid}/manifest.json", f"database/{bid}/manifest.sig"]
    res = backups.backup_retention(keys, "database", keep=1, days=30,
                                   now=datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.UTC))
    assert res["deleted"] == ["20200101T000000Z"]
    assert res["objects"][0] == "database/20200101T000000Z/manifest.json" and len(res["objects"]) == 3
    assert len(res["ignored"]) == 7
    res = backups.backup_retention(keys, "database", keep=7, days=30,
                                   now=datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.UTC))
    assert res["deleted"] == []  # seven manual names never push dated backups out


def manifest(**over):
    m = {"schema_version": 1, "created_at": "2026-11-25T12:00:00+00:00", "backup": {"id": BID},
         "artifacts": {"dump/toc.dat": {"sha256": "a" * 64, "bytes": 10}, "dump/3001.dat.gz": {"sha256": "b" * 64,
                                                                                              "bytes": 5}},
         "tables": {"public.t": {"rows": 1, "checksum": "1", "max_time": None, "time_column": None}}}
    m.update(over)
    return m


@pytest.mark.parametrize(("m", "says"), [
    (manifest(artifacts={"dump/toc.dat": {"sha256": "a" * 64, "bytes": 1}, "../../x": {"sha256": "a" * 64,
                                                                                       "bytes": 1}}),
     "is not one a backup writes"),
    (manifest(artifacts={"dump/toc.dat": {"sha256": "a" * 64, "bytes": 1}, "/etc/passwd": {}}), "/etc/passwd"),
    (manifest(backup={"id": "20200101T000000Z"}), "is not the backup's folder"),
    (manifest(artifacts={"dump/toc.dat": {"sha256": "XYZ", "bytes": 1}}), "no sha256"),
    (manifest(artifacts={"dump/toc.dat": {"sha256": "a" * 64, "bytes": -1}}), "no size"),
    (manifest(artifacts={}), "artifacts is missing"),
    (manifest(tables={"public.t": {"rows": "1"}}), "no row count"),
    (manifest(created_at=5), "not an ISO 8601"),
    (manifest(schema_version=2), "schema_version"),
    ([], "not a JSON object"),
])
def test_malformed_manifests_get_one_clear_error_each(m, says):
    problems = _backup.backup_manifest_problems(m, BID)
    assert any(says in p for p in problems), problems


def test_a_good_manifest_passes():
    assert _backup.backup_manifest_problems(manifest(), BID) == []


def test_superset_comparison_allows_rows_since_and_catches_missing_or_changed_rows():
    exp = {"checksum_algorithm": "a", "tables": {
        "public.fills": {"rows": 10, "checksum": "5", "max_time": "T", "time_column": "filled_at"},
        "public.positions": {"rows": 3, "checksum": "9", "max_time": "T", "time_column": "updated_at"},
        "public.markets": {"rows": 2, "checksum": "7", "max_time": None, "time_column": None}}}
    plan = _manifest.watermark_plan(exp)
    assert plan["public.fills"]["mode"] == "watermark" and plan["public.positions"]["mode"] == "mutable"
    assert "public.markets" not in plan
    ok = {"checksum_algorithm": "a", "tables": {
        "public.fills": {"rows": 10, "checksum": "5", "max_time": "T", "watermark": "T", "rows_since": 4},
        "public.positions": {"rows": 3, "checksum": None, "max_time": None, "watermark": "mutable"},
        "public.markets": {"rows": 2, "checksum": "7", "max_time": None},
        "public.new_table": {"rows": 1}}}
    assert _manifest.compare_superset(exp, ok) == []
    assert _manifest.rows_since(ok) == {"public.fills": 4}
    bad = {"checksum_algorithm": "a", "tables": dict(ok["tables"], **{
        "public.fills": {"rows": 9, "checksum": "4", "max_time": "T", "watermark": "T"},
        "public.positions": {"rows": 2, "checksum": None, "max_time": None, "watermark": "mutable"},
        "public.markets": {"rows": 2, "checksum": "8", "max_time": None}})}
    messages = [m["message"] for m in _manifest.compare_superset(exp, bad)]
    assert any("public.fills" in m and "1 row(s) missing" in m for m in messages)
    assert any("public.positions" in m and "1 row(s) deleted" in m for m in messages)
    assert any("public.markets" in m and "checksum" in m for m in messages)


def test_watermark_sql_quotes_the_watermark():
    sql = _manifest.table_stats_sql("public.t", "ts", False, [], watermark="x' OR '1'='1")
    assert "<= 'x'' OR ''1''=''1'" in sql


def test_work_folders_are_private_and_foreign_ones_refused(tmp_path):
    import os

    mine = tmp_path / "a" / "b"
    _backup.private_folder(str(mine), False)
    assert oct(mine.stat().st_mode & 0o777) == "0o700"
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(_backup.AgbotDrError, match="symbolic link"):
        _backup.private_folder(str(link), False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)
        with pytest.raises(_backup.AgbotDrError, match="belongs to uid 65534"):
            _backup.private_folder(str(foreign), False)
        with pytest.raises(_backup.AgbotDrError, match="belongs to uid 65534"):
            _backup.private_folder(str(foreign / "x"), False)  # its parent is foreign

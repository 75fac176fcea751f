"""Pure logic of the backup filters: which id is latest, what retention deletes."""

import datetime
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("backups", ROOT / "plugins/filter/backups.py")
backups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(backups)

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


def keys_for(bid, complete=True):
    out = [f"database/{bid}/dump/toc.dat", f"database/{bid}/dump/3001.dat.gz"]
    return out + ([f"database/{bid}/manifest.json"] if complete else [])


def test_latest_ignores_incomplete_and_other_prefixes():
    keys = keys_for("20261120T000000Z") + keys_for("20261124T000000Z", complete=False) + ["kubernetes/x.yaml"]
    assert backups.backup_ids(keys, "database") == ["20261120T000000Z"]
    assert backups.backup_ids(keys, "database", complete_only=False) == ["20261124T000000Z", "20261120T000000Z"]


@pytest.mark.parametrize(("keep", "days", "deleted"), [
    (2, 30, ["20260901T000000Z"]),          # old and beyond the newest two
    (3, 30, []),                            # the newest three are all kept
    (1, 1, ["20261101T000000Z", "20260901T000000Z"]),
])
def test_retention(keep, days, deleted):
    ids = ["20261124T000000Z", "20261101T000000Z", "20260901T000000Z"]
    keys = [k for b in ids for k in keys_for(b)]
    res = backups.backup_retention(keys, "database", keep=keep, days=days, now=NOW)
    assert res["deleted"] == deleted
    assert set(res["kept"]) == set(ids) - set(deleted)
    assert all(k.split("/")[1] in deleted for k in res["objects"])
    assert len(res["objects"]) == 3 * len(deleted)


def test_incomplete_old_upload_is_deleted_even_within_keep():
    keys = keys_for("20261124T000000Z") + keys_for("20260101T000000Z", complete=False)
    res = backups.backup_retention(keys, "database", keep=5, days=30, now=NOW)
    assert res["deleted"] == ["20260101T000000Z"]


def test_backup_before_picks_the_newest_complete_backup_not_after_the_restore_point():
    keys = [f"database/{b}/{f}" for b in ("20261201T100000Z", "20261201T110000Z", "20261201T120000Z")
            for f in ("manifest.json", "dump/toc.dat")] + ["database/20261201T113000Z/dump/toc.dat"]
    assert backups.backup_before(keys, "database", "2026-12-01T11:45:00") == "20261201T110000Z"
    assert backups.backup_before(keys, "database", "2026-12-01T11:00:00Z") == "20261201T110000Z"
    assert backups.backup_before(keys, "database", "2026-12-01T09:59:59") == ""
    assert backups.backup_before(keys, "database", "") == "20261201T120000Z"

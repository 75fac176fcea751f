"""The lab's RDS stand-in (dev/lab/services/rds_standin.py): snapshots hold the lab primary's data, a restore is a real
PostgreSQL cluster behind the record's endpoint, point in time replays archived WAL, delete stops and removes it."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[3]
PRIMARY_DB = "ag-botkit-production-timescaledb"


@pytest.fixture(scope="module")
def rds(lab):
    def client(region: str):
        return boto3.client("rds", region_name=region, endpoint_url=lab["env"]["AWS_URL"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


def _connect(lab, port: int):
    return psycopg.connect(host="127.0.0.1", port=port, user="agbot", password=lab["secrets"]["db_password"],
                           dbname="ag_botkit", autocommit=True, connect_timeout=10)


def _wait(client, ident: str, timeout: float = 120) -> dict:
    seen = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        db = client.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
        seen.add(db["DBInstanceStatus"])
        if db["DBInstanceStatus"] != "creating":
            db["seen"] = seen
            return db
        time.sleep(0.2)
    raise AssertionError(f"{ident} still creating after {timeout}s")


def _marker(lab) -> str:
    """A row written to the lab primary now (markets is small and not written by the bot)."""
    symbol = f"T{uuid.uuid4().hex[:8].upper()}-USD"
    with _connect(lab, int(lab["env"]["PGPORT"])) as conn:
        conn.execute("INSERT INTO markets (symbol, base, quote, tick_size) VALUES (%s, 'T', 'USD', 0.01)", (symbol,))
    return symbol


@pytest.fixture(autouse=True)
def _forget_markers(lab):
    yield
    with _connect(lab, int(lab["env"]["PGPORT"])) as conn:
        conn.execute("DELETE FROM markets WHERE symbol LIKE 'T%%-USD' AND base = 'T'")


def _has(lab, port: int, symbol: str) -> bool:
    with _connect(lab, port) as conn:
        return conn.execute("SELECT count(*) FROM markets WHERE symbol = %s", (symbol,)).fetchone()[0] == 1


def test_snapshot_copy_restore_holds_the_data_of_its_moment_and_delete_removes_it(lab, rds):
    east, west = rds("us-east-1"), rds("us-west-2")
    name = f"t-{uuid.uuid4().hex[:6]}"
    before = _marker(lab)
    east.create_db_snapshot(DBInstanceIdentifier=PRIMARY_DB, DBSnapshotIdentifier=name)
    after = _marker(lab)   # written after the snapshot: must not be in it
    arn = east.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]["DBSnapshotArn"]
    west.copy_db_snapshot(SourceDBSnapshotIdentifier=arn, TargetDBSnapshotIdentifier=f"{name}-dr",
                          SourceRegion="us-east-1")
    group = west.describe_db_subnet_groups()["DBSubnetGroups"][0]["DBSubnetGroupName"]
    answer = west.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=f"{name}-dr",
                                                       DBSubnetGroupName=group)
    assert answer["DBInstance"]["DBInstanceStatus"] == "creating"
    try:
        db = _wait(west, name)
        assert db["DBInstanceStatus"] == "available"
        assert db["Endpoint"]["Address"] == "127.0.0.1" and db["Endpoint"]["Port"] != int(lab["env"]["PGPORT"])
        assert _has(lab, db["Endpoint"]["Port"], before)
        assert not _has(lab, db["Endpoint"]["Port"], after)
        status = subprocess.run([str(ROOT / ".venv/bin/python"), "dev/lab/labctl.py", "status"], cwd=ROOT,
                                capture_output=True, text=True, check=False,
                                env={**lab["env"], "PATH": "/usr/bin:/bin"})
        assert f"us-west-2/{name} (restored RDS instance)" in status.stdout
    finally:
        west.delete_db_instance(DBInstanceIdentifier=name, FinalDBSnapshotIdentifier=f"{name}-final")
    folder = Path(lab["lab_dir"]) / "rds" / "instances" / "us-west-2" / name
    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        _connect(lab, db["Endpoint"]["Port"])
    final = Path(lab["lab_dir"]) / "rds" / "snapshots" / "us-west-2" / f"{name}-final" / "data" / "PG_VERSION"
    assert final.exists(), "the final snapshot holds a physical copy"
    for region, snap in (("us-east-1", name), ("us-west-2", f"{name}-dr"), ("us-west-2", f"{name}-final")):
        rds(region).delete_db_snapshot(DBSnapshotIdentifier=snap)
        assert not (Path(lab["lab_dir"]) / "rds" / "snapshots" / region / snap).exists()


def test_point_in_time_restore_replays_archived_wal(lab, rds):
    east = rds("us-east-1")
    first = _marker(lab)
    time.sleep(1.5)
    cut = datetime.now(UTC)
    time.sleep(1.5)
    second = _marker(lab)
    # the latest restorable time is the newest archived WAL: wait until the second marker is archived
    deadline = time.time() + 60
    while east.describe_db_instances(DBInstanceIdentifier=PRIMARY_DB)["DBInstances"][0][
            "LatestRestorableTime"] < cut + timedelta(seconds=2) and time.time() < deadline:
        time.sleep(1)
    lrt = east.describe_db_instances(DBInstanceIdentifier=PRIMARY_DB)["DBInstances"][0]["LatestRestorableTime"]
    assert datetime.now(UTC) - lrt < timedelta(seconds=60), f"latest restorable time {lrt} is not recent"
    name = f"t-pitr-{uuid.uuid4().hex[:6]}"
    east.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=PRIMARY_DB, TargetDBInstanceIdentifier=name,
                                              RestoreTime=cut)
    try:
        db = _wait(east, name)
        assert db["DBInstanceStatus"] == "available", db
        assert _has(lab, db["Endpoint"]["Port"], first)
        assert not _has(lab, db["Endpoint"]["Port"], second), "replayed past the target time"
    finally:
        east.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)

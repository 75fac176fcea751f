"""RDS stand-in: moto's RDS records backed by real PostgreSQL 15 clusters (used by dev/lab/services/aws_server.py).

What it does, on top of moto's records (docs/lab.md, "What each AWS stand-in does for real"):

* The lab primary. The moto instance LAB_RDS_PRIMARY (default us-east-1/ag-botkit-production-timescaledb) is the
  lab's own PostgreSQL (labctl). It archives WAL continuously into <lab-dir>/pg/wal_archive (labctl's
  archive_command, archive_timeout 10 s); its LatestRestorableTime is the time the newest WAL segment was archived.
* Snapshots. CreateDBSnapshot, the automated snapshot moto makes when an instance is created, and the final snapshot
  of DeleteDBInstance are physical copies (pg_basebackup -X stream, as the postgres OS user) of the instance's
  cluster at that moment, stored per region in <lab-dir>/rds/snapshots/<region>/<id>/. CopyDBSnapshot (also across
  regions) hard-links the source's files: copies cost no space. DeleteDBSnapshot removes the copy.
* Restores. RestoreDBInstanceFromDBSnapshot copies the snapshot's files and starts a PostgreSQL 15 cluster on a free
  port; RestoreDBInstanceToPointInTime (source in the same region: moto cannot restore across regions) starts from
  the newest snapshot of the lab primary taken before the target and replays archived WAL up to it (or to the end of
  the archive with UseLatestRestorableTime). The record says `creating` until the cluster accepts connections, then
  `available` with Endpoint.Address 127.0.0.1 and Endpoint.Port of the cluster (an identifier restored again gets
  the same port while it is free, as an RDS endpoint keeps its name); `failed` (and the reason in the
  server log) when it cannot start, `incompatible-restore` when the snapshot holds no data.
* DeleteDBInstance stops the cluster and removes its files (after the final snapshot, when one is asked for).

State on disk: <lab-dir>/rds/instances/<region>/<id>/{data,run,meta.json} and <lab-dir>/rds/snapshots/...
moto forgets everything when the server stops, so the server wipes <lab-dir>/rds at start (stopping clusters left
over); `labctl down` stops the clusters and `labctl status` lists them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

LOG = logging.getLogger("lab.rds")
PG_OS_USER = "postgres"
HANDLED = ("CreateDBSnapshot", "CopyDBSnapshot", "DeleteDBSnapshot", "RestoreDBInstanceFromDBSnapshot",
           "RestoreDBInstanceToPointInTime", "DeleteDBInstance", "CreateDBInstance", "DescribeDBInstances",
           "DescribeDBSnapshots")


def _safe(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


def as_pg(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
          timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool as the postgres OS user (the server refuses to run as root)."""
    cmd = ["runuser", "-u", PG_OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, env=env, timeout=timeout)


def chown_pg(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_OS_USER, PG_OS_USER)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def instance_dirs(lab_dir: Path) -> list[Path]:
    """Folders of the lab's restored clusters (for labctl status/down)."""
    root = lab_dir / "rds" / "instances"
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


def stop_cluster(pg_bin: Path, folder: Path) -> bool:
    data = folder / "data"
    if not (data / "postmaster.pid").exists():
        return False
    as_pg([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], check=False)
    return True


def _lab_db_class(standin: RdsStandIn) -> type:
    """A subclass of moto's DBInstance whose address and latest restorable time come from the stand-in."""
    from moto.rds.models import DBInstance

    class LabDBInstance(DBInstance):  # type: ignore[misc, valid-type]
        __module__ = "moto.rds.lab_standin"   # moto's model registry reads the service from the module name

        @property
        def address(self) -> str:  # type: ignore[override]
            found = standin.endpoint_of(self.region, self.db_instance_identifier)
            return found[0] if found else DBInstance.address.fget(self)  # type: ignore[attr-defined]

        @property
        def latest_restorable_time(self) -> datetime:  # type: ignore[override]
            if standin.is_primary(self.region, self.db_instance_identifier):
                return standin.latest_archived() or self.created
            return DBInstance.latest_restorable_time.fget(self)  # type: ignore[attr-defined]

    return LabDBInstance


class RdsStandIn:
    def __init__(self, lab_dir: Path, pg_bin: Path | None = None) -> None:
        self.lab_dir = lab_dir
        self.root = lab_dir / "rds"
        self.pg_bin = pg_bin or Path(os.environ.get("LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))
        self.archive = lab_dir / "pg" / "wal_archive"
        primary = os.environ.get("LAB_RDS_PRIMARY", "us-east-1/ag-botkit-production-timescaledb")
        self.primary = tuple(primary.split("/", 1))
        self._lock = threading.RLock()
        self._source_locks: dict[str, threading.Lock] = {}
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}  # (region, id) -> {port, status, dir}
        self._ports: dict[tuple[str, str], int] = {}  # (region, id) -> the port its endpoint had last
        self._cls: type | None = None

    # ------------------------------------------------------------------------------------------------ set-up
    def wipe(self) -> None:
        """moto starts empty: stop and remove what a previous server left."""
        for folder in instance_dirs(self.lab_dir):
            if stop_cluster(self.pg_bin, folder):
                LOG.info("stopped left-over cluster %s", folder)
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        for sub in ("snapshots", "instances"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for p in (self.root, self.root / "snapshots", self.root / "instances"):
            chown_pg(p)

    # ----------------------------------------------------------------------------------------------- queries
    def is_primary(self, region: str, ident: str) -> bool:
        return (region, ident) == self.primary

    def endpoint_of(self, region: str, ident: str) -> tuple[str, int] | None:
        with self._lock:
            inst = self.instances.get((region, ident))
        if inst and inst.get("status") == "available":
            return "127.0.0.1", inst["port"]
        return None

    def latest_archived(self) -> datetime | None:
        try:
            newest = max((p.stat().st_mtime for p in self.archive.glob("*.gz") if len(p.name) == 27), default=None)
        except OSError:
            return None
        return datetime.fromtimestamp(newest, UTC) if newest else None

    def primary_conn(self) -> dict[str, Any]:
        doc = json.loads((self.lab_dir / "lab.json").read_text())
        sec = json.loads((self.lab_dir / "secrets.json").read_text())
        return {"host": "127.0.0.1", "port": int(doc["ports"]["pg"]), "user": doc["env"].get("PGUSER", "agbot"),
                "password": sec["db_password"]}

    def source_of(self, region: str, ident: str) -> dict[str, Any] | None:
        """Connection to the cluster behind an instance record (the lab primary or a restored cluster)."""
        if self.is_primary(region, ident):
            return self.primary_conn()
        with self._lock:
            inst = self.instances.get((region, ident))
        if inst and inst.get("status") == "available":
            conn = self.primary_conn()  # restored clusters keep the snapshot's users and passwords
            conn["port"] = inst["port"]
            return conn
        return None

    def snap_dir(self, region: str, snap_id: str) -> Path:
        return self.root / "snapshots" / region / _safe(snap_id.lower())

    # --------------------------------------------------------------------------------------------- snapshots
    def take_snapshot(self, region: str, snap_id: str, ident: str) -> bool:
        """pg_basebackup of the instance's cluster into the snapshot's folder. False when nothing backs it."""
        conn = self.source_of(region, ident)
        target = self.snap_dir(region, snap_id)
        if conn is None:
            LOG.warning("snapshot %s/%s of %s: no cluster behind the instance, the snapshot holds no data",
                        region, snap_id, ident)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        chown_pg(target.parent)
        lock = self._source_locks.setdefault(f"{conn['port']}", threading.Lock())
        started = time.time()
        with lock:
            env = dict(os.environ, PGPASSWORD=conn["password"])
            res = as_pg([str(self.pg_bin / "pg_basebackup"), "-h", conn["host"], "-p", str(conn["port"]),
                         "-U", conn["user"], "-D", str(target / "data"), "-X", "stream", "-c", "fast",
                         "--no-sync"], env=env, check=False, timeout=600)
        if res.returncode != 0:
            LOG.error("pg_basebackup for snapshot %s/%s failed: %s", region, snap_id, res.stderr.strip())
            shutil.rmtree(target, ignore_errors=True)
            return False
        meta = {"region": region, "snapshot": snap_id, "instance": ident, "started": started,
                "finished": time.time(), "primary": self.is_primary(region, ident), "copied_from": None}
        (target / "meta.json").write_text(json.dumps(meta))
        LOG.info("snapshot %s/%s: pg_basebackup of %s (port %s) in %.1fs", region, snap_id, ident, conn["port"],
                 time.time() - started)
        return True

    def copy_snapshot(self, src_region: str, src_id: str, region: str, snap_id: str) -> bool:
        src = self.snap_dir(src_region, src_id)
        dst = self.snap_dir(region, snap_id)
        if not (src / "meta.json").exists():
            LOG.warning("copy %s/%s -> %s/%s: the source holds no data", src_region, src_id, region, snap_id)
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        chown_pg(dst.parent)
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True, capture_output=True)
        meta = json.loads((src / "meta.json").read_text())
        meta.update(region=region, snapshot=snap_id, copied_from=f"{src_region}/{src_id}")
        (dst / "meta.json").unlink()
        (dst / "meta.json").write_text(json.dumps(meta))
        LOG.info("snapshot copy %s/%s -> %s/%s (hard links)", src_region, src_id, region, snap_id)
        return True

    def delete_snapshot(self, region: str, snap_id: str) -> None:
        shutil.rmtree(self.snap_dir(region, snap_id), ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- restores
    def _base_for_time(self, target: datetime | None) -> Path | None:
        """Newest snapshot of the lab primary (any region: copies share files) finished before `target`."""
        best = None
        for meta_path in (self.root / "snapshots").glob("*/*/meta.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if not meta.get("primary"):
                continue
            if target is not None and meta["finished"] > target.timestamp():
                continue
            if best is None or meta["finished"] > best[0]:
                best = (meta["finished"], meta_path.parent)
        return best[1] if best else None

    def start_restore(self, db: Any, region: str, ident: str, snap: Path | None, pitr: dict | None) -> None:
        """Mark the record creating and start the cluster in a thread; available once it accepts connections."""
        folder = self.root / "instances" / region / ident
        # an instance restored again under the same identifier keeps its endpoint, as on RDS (same DNS name)
        port = self._ports.get((region, ident)) or free_port()
        if port_busy(port):
            port = free_port()
        self._ports[(region, ident)] = port
        with self._lock:
            self.instances[(region, ident)] = {"port": port, "status": "creating", "dir": str(folder)}
        self.adopt(db)
        db.status = "creating"
        db.port = port
        threading.Thread(target=self._restore, args=(db, region, ident, snap, pitr, folder, port),
                         daemon=True, name=f"restore-{ident}").start()

    def _restore(self, db: Any, region: str, ident: str, snap: Path | None, pitr: dict | None, folder: Path,
                 port: int) -> None:
        started = time.time()
        try:
            if snap is None or not (snap / "data").is_dir():
                raise RestoreError("incompatible-restore", "the snapshot holds no data")
            if folder.exists():
                stop_cluster(self.pg_bin, folder)
                shutil.rmtree(folder)
            folder.parent.mkdir(parents=True, exist_ok=True)
            chown_pg(folder.parent)
            folder.mkdir()
            (folder / "run").mkdir()
            chown_pg(folder)
            chown_pg(folder / "run")
            as_pg(["cp", "-a", str(snap / "data"), str(folder / "data")])
            data = folder / "data"
            conf = [f"port = {port}", "listen_addresses = '127.0.0.1'",
                    f"unix_socket_directories = '{folder / 'run'}'", "archive_mode = off", "fsync = off",
                    "synchronous_commit = off", "shared_buffers = 32MB", "max_connections = 100",
                    # no read-only connections during recovery: accepting connections means the restore is done
                    "hot_standby = off"]
            if pitr is not None:
                conf += [f"restore_command = 'test -f {self.archive}/%f.gz && gunzip -c {self.archive}/%f.gz > %p'",
                         "recovery_target_action = 'promote'"]
                if pitr.get("time") is not None:
                    conf.append(f"recovery_target_time = '{pitr['time'].strftime('%Y-%m-%d %H:%M:%S.%f')}+00'")
                as_pg(["touch", str(data / "recovery.signal")])
            with open(data / "postgresql.auto.conf", "a", encoding="utf-8") as f:
                f.write("\n# lab RDS stand-in\n" + "\n".join(conf) + "\n")
            res = as_pg([str(self.pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                         "-t", "300", "start"], check=False, timeout=330)
            if res.returncode != 0:
                log = (folder / "server.log").read_text(errors="replace")[-600:] if (folder / "server.log").exists() \
                    else ""
                raise RestoreError("failed", f"PostgreSQL did not start: {res.stderr.strip()} {log}")
            for _ in range(600):
                if as_pg([str(self.pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         check=False).returncode == 0:
                    break
                time.sleep(0.2)
            else:
                raise RestoreError("failed", "PostgreSQL does not accept connections")
            (folder / "meta.json").write_text(json.dumps({"region": region, "instance": ident, "port": port,
                                                          "snapshot": str(snap), "pitr": bool(pitr)}))
            with self._lock:
                self.instances[(region, ident)]["status"] = "available"
            db.status = "available"
            LOG.info("instance %s/%s available on 127.0.0.1:%s after %.1fs (from %s%s)", region, ident, port,
                     time.time() - started, snap.name, ", WAL replayed" if pitr else "")
            self._pending_automated(region, ident)
        except (RestoreError, OSError, subprocess.SubprocessError) as exc:
            status = exc.status if isinstance(exc, RestoreError) else "failed"
            LOG.error("restore of %s/%s failed (%s): %s", region, ident, status, exc)
            with self._lock:
                self.instances[(region, ident)]["status"] = status
            db.status = status

    def _pending_automated(self, region: str, ident: str) -> None:
        """The automated snapshot moto recorded when the instance was created: take it now that it has data."""
        from moto.rds.models import rds_backends

        for backends in rds_backends.values():
            be = backends.get(region) if hasattr(backends, "get") else None
            if be is None:
                continue
            for snap_id, snap in list(be.database_snapshots.items()):
                if snap.db_instance_identifier == ident and snap.snapshot_type == "automated" \
                        and not (self.snap_dir(region, snap_id) / "meta.json").exists():
                    self.take_snapshot(region, snap_id, ident)

    def delete_instance(self, region: str, ident: str) -> None:
        with self._lock:
            inst = self.instances.pop((region, ident), None)
        folder = self.root / "instances" / region / ident
        if inst or folder.exists():
            stop_cluster(self.pg_bin, folder)
            shutil.rmtree(folder, ignore_errors=True)
            LOG.info("instance %s/%s: cluster stopped and removed", region, ident)

    # ----------------------------------------------------------------------------------------- moto plumbing
    def adopt(self, db: Any) -> None:
        from moto.rds.models import DBInstance

        if self._cls is None:
            self._cls = _lab_db_class(self)
        if type(db) is DBInstance:
            db.__class__ = self._cls

    @staticmethod
    def backend(account: str, region: str) -> Any:
        from moto.rds.models import rds_backends

        return rds_backends[account][region]

    def handle(self, action: str, form: dict[str, list[str]], account: str, region: str, call_moto: Any) -> Any:
        """Run moto, then make the records real. Returns moto's (status, headers, body)."""
        def one(key: str) -> str:
            return (form.get(key) or [""])[0]

        be = self.backend(account, region)
        final_snapshot = None
        if action == "DeleteDBInstance" and one("SkipFinalSnapshot").lower() != "true" and \
                one("FinalDBSnapshotIdentifier"):
            final_snapshot = one("FinalDBSnapshotIdentifier")
        answer = call_moto()
        if answer[0] != 200:
            return answer
        if action == "CreateDBSnapshot":
            self.take_snapshot(region, one("DBSnapshotIdentifier").lower(), one("DBInstanceIdentifier"))
        elif action == "CopyDBSnapshot":
            src = one("SourceDBSnapshotIdentifier")
            if src.startswith("arn:"):
                parts = src.split(":")
                src_region, src_id = parts[3], ":".join(parts[6:])
            else:
                src_region, src_id = region, src
            self.copy_snapshot(src_region, src_id.lower(), region, one("TargetDBSnapshotIdentifier").lower())
        elif action == "DeleteDBSnapshot":
            self.delete_snapshot(region, one("DBSnapshotIdentifier").lower())
        elif action == "DeleteDBInstance":
            ident = one("DBInstanceIdentifier")
            if final_snapshot:
                self.take_snapshot(region, final_snapshot.lower(), ident)
            self.delete_instance(region, ident)
        elif action == "RestoreDBInstanceFromDBSnapshot":
            ident = one("DBInstanceIdentifier")
            snap_id = one("DBSnapshotIdentifier")
            if snap_id.startswith("arn:"):
                snap_id = snap_id.split(":", 6)[6]
            db = be.databases.get(ident)
            snap = self.snap_dir(region, snap_id.lower())
            if db is not None:
                self.start_restore(db, region, ident, snap if (snap / "meta.json").exists() else None, None)
        elif action == "RestoreDBInstanceToPointInTime":
            ident = one("TargetDBInstanceIdentifier")
            source = one("SourceDBInstanceIdentifier").split(":")[-1]
            db = be.databases.get(ident)
            if db is not None:
                when = None
                if one("RestoreTime"):
                    when = datetime.fromisoformat(one("RestoreTime").replace("Z", "+00:00"))
                base = self._base_for_time(when) if self.is_primary(region, source) else None
                self.start_restore(db, region, ident, base, {"time": when})
        elif action == "CreateDBInstance":
            db = be.databases.get(one("DBInstanceIdentifier"))
            if db is not None:
                self.adopt(db)
        # automated snapshots of the lab primary (made by moto when the record was created) get their data now
        if self.primary[0] == region:
            for snap_id, snap in list(be.database_snapshots.items()):
                if snap.db_instance_identifier == self.primary[1] and snap.snapshot_type == "automated" \
                        and not self.snap_dir(region, snap_id).exists():
                    self.take_snapshot(region, snap_id, self.primary[1])
            prim = be.databases.get(self.primary[1])
            if prim is not None:
                self.adopt(prim)
        return answer


class RestoreError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8", "replace"))

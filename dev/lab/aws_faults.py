"""Data faults on the lab's AWS (and switches for the request faults of dev/lab/services/aws_server.py).

    .venv/bin/python dev/lab/aws_faults.py corrupt-object --bucket ag-botkit-backups --key database/x.sql.gz \
        --mode truncate
    .venv/bin/python dev/lab/aws_faults.py restore-object --bucket ag-botkit-backups --key database/x.sql.gz
    .venv/bin/python dev/lab/aws_faults.py delete-snapshots --region us-west-2
    .venv/bin/python dev/lab/aws_faults.py restore-snapshots --region us-west-2
    .venv/bin/python dev/lab/aws_faults.py on aws.throttle --service rds --count 3     # request faults: file switches
    .venv/bin/python dev/lab/aws_faults.py off aws.throttle
    .venv/bin/python dev/lab/aws_faults.py status

Options --endpoint (default: $AWS_URL, else http://127.0.0.1:55000) and --lab-dir (default: $LAB_DIR, else .lab).
The original of a corrupted object is kept under <lab-dir>/faults/saved/ until restore-object puts it back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DB_ID = "ag-botkit-production-timescaledb"
REQUEST_FAULTS = ("aws.down", "aws.throttle", "aws.error")


def _client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                        config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _saved_paths(lab_dir: Path, bucket: str, key: str) -> tuple[Path, Path]:
    base = lab_dir / "faults" / "saved" / "s3" / bucket / quote(key, safe="")
    return base.with_name(base.name + ".orig"), base.with_name(base.name + ".json")


def sha256_of(endpoint: str, bucket: str, key: str) -> str:
    body = _client("s3", endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


def corrupt_object(endpoint: str, lab_dir: Path, bucket: str, key: str, mode: str = "truncate") -> dict[str, Any]:
    """Replace s3://bucket/key by a truncated (first half) or altered (same length, bytes flipped) copy."""
    if mode not in ("truncate", "alter"):
        raise ValueError("mode must be truncate or alter")
    s3 = _client("s3", endpoint)
    obj = s3.get_object(Bucket=bucket, Key=key)
    data = obj["Body"].read()
    orig_path, meta_path = _saved_paths(lab_dir, bucket, key)
    orig_path.parent.mkdir(parents=True, exist_ok=True)
    if not orig_path.exists():  # corrupting twice keeps the real original
        orig_path.write_bytes(data)
        meta_path.write_text(json.dumps({
            "bucket": bucket, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "content_type": obj.get("ContentType"), "metadata": obj.get("Metadata", {}),
            "version_id": obj.get("VersionId"), "etag": obj.get("ETag")}, indent=2))
    if mode == "truncate":
        bad = data[: len(data) // 2]
    else:
        buf = bytearray(data or b"\0")
        mid = len(buf) // 2
        for i in range(mid, min(len(buf), mid + 64)):
            buf[i] ^= 0xFF
        bad = bytes(buf)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": bad, "Metadata": obj.get("Metadata", {})}
    if obj.get("ContentType"):
        kwargs["ContentType"] = obj["ContentType"]
    put = s3.put_object(**kwargs)
    return {"bucket": bucket, "key": key, "mode": mode, "original_sha256": hashlib.sha256(data).hexdigest(),
            "corrupted_sha256": hashlib.sha256(bad).hexdigest(), "size": len(bad),
            "version_id": put.get("VersionId"), "saved": str(orig_path)}


def restore_object(endpoint: str, lab_dir: Path, bucket: str, key: str) -> dict[str, Any]:
    """Put the original saved by corrupt_object back (as a new version) and forget the saved copy."""
    orig_path, meta_path = _saved_paths(lab_dir, bucket, key)
    if not orig_path.exists():
        raise FileNotFoundError(f"no saved original for s3://{bucket}/{key} under {orig_path.parent}")
    data = orig_path.read_bytes()
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data, "Metadata": meta.get("metadata") or {}}
    if meta.get("content_type"):
        kwargs["ContentType"] = meta["content_type"]
    put = _client("s3", endpoint).put_object(**kwargs)
    orig_path.unlink()
    meta_path.unlink(missing_ok=True)
    return {"bucket": bucket, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "version_id": put.get("VersionId")}


def delete_snapshots(endpoint: str, region: str = "us-west-2", db_instance: str = DB_ID) -> list[str]:
    """Delete every manual DB snapshot of db_instance in region (the DR copies): 'no snapshot in recovery region'."""
    rds = _client("rds", endpoint, region)
    deleted = []
    for snap in rds.describe_db_snapshots(DBInstanceIdentifier=db_instance, SnapshotType="manual")["DBSnapshots"]:
        rds.delete_db_snapshot(DBSnapshotIdentifier=snap["DBSnapshotIdentifier"])
        deleted.append(snap["DBSnapshotIdentifier"])
    return deleted


def restore_snapshots(endpoint: str, lab_dir: Path, region: str = "us-west-2") -> list[str]:
    """Re-create the DR-region copies of the primary's snapshots, as dev/lab/seed_aws.py does."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import seed_aws

    if region != seed_aws.DR:
        raise ValueError(f"restore-snapshots re-seeds the DR region ({seed_aws.DR}) only")
    seeder = seed_aws.Seeder(endpoint, lab_dir)
    made = seed_aws.copy_dr_snapshots(seeder)
    seed_aws.write_state(lab_dir, {"dr_snapshots": seeder.state["dr_snapshots"]})
    return made


def fault_on(lab_dir: Path, name: str, options: dict[str, Any] | None = None) -> Path:
    path = lab_dir / "faults" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(json.dumps(options or {}))
    os.replace(tmp, path)
    return path


def fault_off(lab_dir: Path, name: str) -> bool:
    path = lab_dir / "faults" / name
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def fault_status(lab_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in REQUEST_FAULTS:
        path = lab_dir / "faults" / name
        if path.exists():
            try:
                out[name] = json.loads(path.read_text() or "{}")
            except ValueError:
                out[name] = {}
    saved = lab_dir / "faults" / "saved" / "s3"
    out["corrupted_objects"] = sorted(
        json.loads(p.read_text())["bucket"] + "/" + json.loads(p.read_text())["key"]
        for p in saved.rglob("*.json")) if saved.exists() else []
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lab AWS faults", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("--endpoint", default=os.environ.get("AWS_URL", "http://127.0.0.1:55000"))
    parser.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ".lab")))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("corrupt-object")
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mode", choices=("truncate", "alter"), default="truncate")
    p = sub.add_parser("restore-object")
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    for name in ("delete-snapshots", "restore-snapshots"):
        p = sub.add_parser(name)
        p.add_argument("--region", default="us-west-2")
    p = sub.add_parser("on", help="turn a request fault on (aws.down, aws.throttle, aws.error)")
    p.add_argument("name", choices=REQUEST_FAULTS)
    p.add_argument("--service")
    p.add_argument("--action")
    p.add_argument("--region")
    p.add_argument("--count", type=int)
    p.add_argument("--mode", choices=("close", "503"), help="aws.down only")
    p = sub.add_parser("off", help="turn a request fault off")
    p.add_argument("name", choices=(*REQUEST_FAULTS, "all"))
    sub.add_parser("status")
    args = parser.parse_args(argv)
    lab_dir = args.lab_dir.resolve()

    try:
        if args.cmd == "corrupt-object":
            result: Any = corrupt_object(args.endpoint, lab_dir, args.bucket, args.key, args.mode)
        elif args.cmd == "restore-object":
            result = restore_object(args.endpoint, lab_dir, args.bucket, args.key)
        elif args.cmd == "delete-snapshots":
            result = {"region": args.region, "deleted": delete_snapshots(args.endpoint, args.region)}
        elif args.cmd == "restore-snapshots":
            result = {"region": args.region, "copied": restore_snapshots(args.endpoint, lab_dir, args.region)}
        elif args.cmd == "on":
            opts = {k: getattr(args, k) for k in ("service", "action", "region", "count", "mode")
                    if getattr(args, k) is not None}
            result = {"on": str(fault_on(lab_dir, args.name, opts)), "options": opts}
        elif args.cmd == "off":
            names = REQUEST_FAULTS if args.name == "all" else (args.name,)
            result = {"off": [n for n in names if fault_off(lab_dir, n)]}
        else:
            result = fault_status(lab_dir)
    except (ClientError, FileNotFoundError, ValueError) as exc:
        print(f"aws_faults {args.cmd}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

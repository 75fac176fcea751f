# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups as untrusted input: ids, the strict shape of a backup manifest, and its signature.

Pure Python (no boto3, no cryptography at import time), unit-tested in tests/unit/test_restore_decisions.py.

A backup id is ``YYYYMMDDTHHMMSSZ`` (UTC) with an optional label: ``20261125T120000Z-pre-migration``.
Ordering is by the time in the id, never by string order of arbitrary names.

A signature file ``manifest.sig`` (JSON) sits beside ``manifest.json``::

    {"format": 1, "key_id": "arn:aws:kms:...", "algorithm": "ECDSA_SHA_256",
     "digest": "sha256:<hex of manifest.json's bytes>", "signature": "<base64 DER ECDSA>"}

The signature is KMS Sign over the 32 digest bytes with MessageType RAW (KMS hashes them once more with
SHA-256; moto 5.2.5 does the same for DIGEST, so RAW is the one form both agree on), verified locally with
the key's public key: ECDSA-P256 over sha256(digest).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import stat

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError

BACKUP_ID_RE = re.compile(r"^(?P<time>[0-9]{8}T[0-9]{6}Z)(?:-(?P<label>[a-z0-9][a-z0-9-]{0,39}))?$")
ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
ARTIFACT_RE = re.compile(r"^dump/(?:toc\.dat|[0-9]{1,10}\.dat(?:\.gz)?)$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_ARTIFACTS = 100000
MAX_ARTIFACT_BYTES = 1 << 44  # 16 TiB
MAX_TABLES = 100000
SIGNATURE_FORMAT = 1
SIGNING_ALGORITHM = "ECDSA_SHA_256"


def backup_id_problem(bid) -> str | None:
    """None for a valid backup id, else why not."""
    if not isinstance(bid, str) or not BACKUP_ID_RE.match(bid):
        return ("backup id %r is not of the form YYYYMMDDTHHMMSSZ[-label] (UTC time, then an optional label of "
                "lower-case letters, digits and dashes, e.g. 20261125T120000Z-pre-migration)" % (bid,))
    try:
        datetime.datetime.strptime(BACKUP_ID_RE.match(bid).group("time"), ID_TIME_FORMAT)
    except ValueError:
        return "backup id %r does not start with a real UTC time" % bid
    return None


def backup_id_time(bid) -> datetime.datetime | None:
    if backup_id_problem(bid):
        return None
    return datetime.datetime.strptime(bid[:16], ID_TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)


def newest_first(ids) -> list[str]:
    """Valid ids, newest first by the time in the id (then by label); invalid ones are left out."""
    return sorted((b for b in ids if backup_id_time(b) is not None), key=lambda b: (backup_id_time(b), b),
                  reverse=True)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def backup_manifest_problems(manifest, backup_id: str) -> list[str]:
    """Every way `manifest` (parsed JSON from the bucket) is not a well-formed manifest of backup `backup_id`.
    Checked before any of its keys is used as a path or any file is downloaded."""
    p: list[str] = []
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    version = manifest.get("schema_version")
    if not _is_int(version) or version != 1:
        p.append("schema_version is %r, this collection reads 1" % (version,))
    backup = manifest.get("backup")
    if not isinstance(backup, dict) or not isinstance(backup.get("id"), str):
        p.append("backup.id is missing")
    else:
        if backup["id"] != backup_id:
            p.append("backup.id %r is not the backup's folder %r (a manifest copied from another backup?)"
                     % (backup["id"], backup_id))
        why = backup_id_problem(backup["id"])
        if why:
            p.append(why)
    created = manifest.get("created_at")
    try:
        datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        if not isinstance(created, str):
            raise ValueError
    except ValueError:
        p.append("created_at %r is not an ISO 8601 time" % (created,))
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        p.append("artifacts is missing or empty")
    elif len(artifacts) > MAX_ARTIFACTS:
        p.append("artifacts lists %d files, more than %d" % (len(artifacts), MAX_ARTIFACTS))
    else:
        if "dump/toc.dat" not in artifacts:
            p.append("artifacts has no dump/toc.dat")
        for key, entry in artifacts.items():
            if not isinstance(key, str) or not ARTIFACT_RE.match(key):
                p.append("artifact key %r is not one a backup writes (dump/toc.dat, dump/<n>.dat[.gz]): refused "
                         "before it is used as a path" % (key,))
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                    or not SHA256_RE.match(entry["sha256"]):
                p.append("artifact %s has no sha256 of 64 lower-case hex digits" % key)
            elif not _is_int(entry.get("bytes")) or not 0 <= entry["bytes"] <= MAX_ARTIFACT_BYTES:
                p.append("artifact %s has no size in bytes (0 to %d)" % (key, MAX_ARTIFACT_BYTES))
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        p.append("tables is missing")
    elif len(tables) > MAX_TABLES:
        p.append("tables lists %d tables, more than %d" % (len(tables), MAX_TABLES))
    else:
        for name, entry in tables.items():
            if not isinstance(entry, dict) or not _is_int(entry.get("rows")) or entry["rows"] < 0:
                p.append("table %s has no row count" % name)
                continue
            for field in ("checksum", "max_time", "time_column"):
                if entry.get(field) is not None and (not isinstance(entry[field], str) or len(entry[field]) > 200):
                    p.append("table %s: %s is not a short string" % (name, field))
    for field in ("checksum_algorithm", "checksum_canary", "schema_hash", "database"):
        if manifest.get(field) is not None and not isinstance(manifest[field], str):
            p.append("%s is not a string" % field)
    if manifest.get("extensions") is not None and not isinstance(manifest["extensions"], dict):
        p.append("extensions is not an object")
    return p


def parse_signature(text: str | None) -> dict:
    """The signature file's fields; ValueError with a readable reason."""
    if not text or not text.strip():
        raise ValueError("it has no manifest.sig")
    try:
        sig = json.loads(text)
    except ValueError as exc:
        raise ValueError("its manifest.sig is not JSON (%s)" % exc) from exc
    if not isinstance(sig, dict) or sig.get("format") != SIGNATURE_FORMAT:
        raise ValueError("its manifest.sig is not format %d" % SIGNATURE_FORMAT)
    for field in ("digest", "signature", "algorithm"):
        if not isinstance(sig.get(field), str):
            raise ValueError("its manifest.sig has no %s" % field)
    if sig["algorithm"] != SIGNING_ALGORITHM:
        raise ValueError("its manifest.sig uses %s, not %s" % (sig["algorithm"], SIGNING_ALGORITHM))
    return sig


def private_folder(path: str, check_mode: bool) -> None:
    """Create `path` 0700 (its missing parents too), refusing it, or its existing parent, when it is a symbolic
    link, not a folder, or owned by another user (root may own the parent)."""
    path = os.path.abspath(path)
    for existing, owners in ((path, (os.geteuid(),)), (os.path.dirname(path), (os.geteuid(), 0))):
        if not os.path.lexists(existing):
            continue
        st = os.lstat(existing)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise AgbotDrError("%s is not a folder (a symbolic link or a file): refused; remove it or choose another "
                               "db_restore_work_dir / db_backup_dir" % existing)
        if st.st_uid not in owners:
            raise AgbotDrError("%s belongs to uid %s, not to this user (uid %s): refused, since its owner could "
                               "replace what is written there; use a folder of your own "
                               "(db_restore_work_dir / db_backup_dir)"
                               % (existing, st.st_uid, os.geteuid()))
    if not check_mode and not os.path.isdir(path):
        os.makedirs(path, 0o700)
        os.chmod(path, 0o700)

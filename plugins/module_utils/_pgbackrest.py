# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest: its command line declared once, its output parsed, and the decisions of a physical restore.

Pure functions (no Ansible, no I/O) are unit-tested in tests/unit/test_pgbackrest.py:

* parse_info()      the JSON of ``pgbackrest info --output=json`` -> the stanza's backup sets and archive range
* choose_backup()   which backup set a restore to a target time starts from (newest that finished before it)
* parse_verify()    the text of ``pgbackrest verify``: it exits 0 on a corrupted repository file (checked with
                    2.45), only its output says ``status: invalid``, so the output is what counts
* archive_rpo()     RPO arithmetic from pg_stat_archiver: seconds of WAL not yet in the repository
* recovery_reached() did replay reach the point asked for
* explain()         what to do about a pgBackRest error reaching its repository (TLS trust, a missing bucket, keys, KMS)
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

# the errors live in _errors.py (the one exception hierarchy); imported here, so _pgbackrest.PgBackRestError still works
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import PgBackRestError, TargetBeforeBackupsError


def parse_time(value) -> datetime:
    """An ISO 8601 time (``Z`` or an offset, or naive meaning UTC), or epoch seconds, as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value).strip()
    if not text:
        raise ValueError("empty time")
    text = text.replace(" ", "T", 1) if re.match(r"^\d{4}-\d\d-\d\d \d", text) else text
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # PostgreSQL prints offsets as +00 (no minutes)
    text = re.sub(r"([+-]\d\d)$", r"\1:00", text)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def pg_time(dt: datetime) -> str:
    """A target time as pgBackRest/PostgreSQL read it (recovery_target_time), always with its offset."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


# --------------------------------------------------------------------------- info


def parse_info(doc, stanza: str) -> dict:
    """The stanza's record from ``pgbackrest info --output=json`` (a list of stanzas), simplified.

    Returns {stanza, status_code, status_message, backups: [{label, type, start, stop, prior, error,
    size, repo_size, wal_start, wal_stop}] oldest first, archive_min, archive_max, system_id, pg_version}.
    """
    if not isinstance(doc, list):
        raise PgBackRestError("pgbackrest info did not return a JSON list of stanzas (%s)" % type(doc).__name__)
    for entry in doc:
        if isinstance(entry, dict) and entry.get("name") == stanza:
            break
    else:
        raise PgBackRestError("stanza %r is not in the repository: create it first (pgbackrest role, "
                              "pgbackrest_stanza_create) or check pgbackrest_stanza" % stanza)
    status = entry.get("status") or {}
    backups = []
    for b in entry.get("backup") or []:
        ts = b.get("timestamp") or {}
        arch = b.get("archive") or {}
        info = b.get("info") or {}
        if ts.get("start") is None or ts.get("stop") is None or not b.get("label"):
            raise PgBackRestError("backup set without label or timestamps in pgbackrest info: %r" % (b,))
        backups.append({
            "label": b["label"],
            "type": b.get("type"),
            "start": iso(parse_time(int(ts["start"]))),
            "stop": iso(parse_time(int(ts["stop"]))),
            "stop_epoch": int(ts["stop"]),
            "prior": b.get("prior"),
            "error": bool(b.get("error", False)),
            "size": (info.get("size")),
            "repo_size": ((info.get("repository") or {}).get("delta")),
            "wal_start": arch.get("start"),
            "wal_stop": arch.get("stop"),
        })
    backups.sort(key=lambda x: x["stop_epoch"])
    archives = entry.get("archive") or []
    mins = [a.get("min") for a in archives if a.get("min")]
    maxs = [a.get("max") for a in archives if a.get("max")]
    dbs = entry.get("db") or []
    # with status 99 ("other") the reason is in each repository's own status: a TLS or S3 error reaching it
    repo_status = [r.get("status") or {} for r in entry.get("repo") or [] if isinstance(r, dict)]
    repo_errors = [str(st.get("message")) for st in repo_status if st.get("code") == 99]
    return {
        "stanza": stanza,
        "status_code": int(status.get("code", 99)),
        "status_message": status.get("message", "unknown"),
        "repo_errors": repo_errors,
        "backups": backups,
        "archive_min": min(mins) if mins else None,
        "archive_max": max(maxs) if maxs else None,
        "system_id": dbs[-1].get("system-id") if dbs else None,
        "pg_version": dbs[-1].get("version") if dbs else None,
    }


# (pattern in pgBackRest's error text, what to do); the first match wins
_ADVICE = (
    # first: "was not archived before the 60000ms timeout" is PostgreSQL's archiver failing, not the repository
    # endpoint (the generic "timeout" below would blame the endpoint)
    (re.compile(r"was not archived before the \d+ms timeout", re.I),
     "WAL does not reach the repository: the database's archive_command fails or is too slow. Read the PostgreSQL "
     "log (archiver lines) and SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver; check that "
     "archive_command names this stanza and config (pgbackrest_archive_command), and that the repository answers "
     "(pgbackrest --stanza=<stanza> info as the database's OS user)"),
    (re.compile(r"unable to verify certificate|certificate verify failed", re.I),
     "the repository endpoint's TLS certificate is not trusted: set pgbackrest_repo_s3_ca_file (inventory "
     "dr_pgbackrest_s3_ca_file; pgBackRest repo1-storage-ca-file) to the CA that signed the endpoint's certificate "
     "(in the lab: LAB_CA_FILE from .lab/env, made by `make lab-up`), or check that the endpoint is the one you mean. "
     "Do not turn verification off (pgbackrest_repo_s3_verify_tls): the repository holds the whole database"),
    (re.compile(r"unable to find hostname .* in certificate", re.I),
     "the repository endpoint's certificate does not name the host connected to: set pgbackrest_repo_s3_endpoint to "
     "a name the certificate holds, or have the certificate issued for it"),
    (re.compile(r"NoSuchBucket", re.I),
     "the S3 bucket does not exist (or the endpoint or region is not the bucket's): create it (private, versioned, "
     "in the region of pgbackrest_repo_s3_region), or fix pgbackrest_repo_s3_bucket (inventory dr_pgbackrest_bucket)"),
    (re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch", re.I),
     "S3 refused the credentials: check pgbackrest_repo_s3_key and pgbackrest_repo_s3_key_secret (from vault), or use "
     "pgbackrest_repo_s3_key_type=auto with an instance role"),
    (re.compile(r"KMS|kms", re.I),
     "S3 could not use the KMS key for server-side encryption: check pgbackrest_repo_s3_kms_key_id (inventory "
     "dr_pgbackrest_kms_key_id), that the key is enabled and in the bucket's region, and that the database host's "
     "role may kms:GenerateDataKey and kms:Decrypt with it"),
    (re.compile(r"AccessDenied", re.I),
     "S3 denied access: the database host's role (or the keys) needs s3:ListBucket on the bucket and "
     "s3:GetObject/PutObject/DeleteObject under pgbackrest_repo_path"),
    (re.compile(r"unable to connect to|unable to get address for|connection refused|timed? ?out", re.I),
     "the repository endpoint did not answer: check pgbackrest_repo_s3_endpoint and pgbackrest_repo_s3_port, and "
     "that the database host can reach it (security groups, a VPC endpoint for S3, a proxy)"),
)


def explain(text: str) -> str:
    """What to do about a pgBackRest error reaching its repository, or "" when the text is not one we know."""
    for pattern, advice in _ADVICE:
        if pattern.search(text or ""):
            return advice
    return ""


def with_advice(message: str, text: str) -> str:
    advice = explain(text)
    return "%s. What to do: %s" % (message.rstrip(". "), advice) if advice else message


def choose_backup(backups: list[dict], target=None, label: str = "") -> dict:
    """The backup set to restore from.

    ``label`` given: that set (it must exist, be error-free, and for a time target have finished before it).
    ``target`` None: the newest set (replay to the end of the archive). Otherwise the newest set that finished
    before the target time: replay can only reach a time after the backup's consistency point.
    """
    usable = [b for b in backups if not b.get("error")]
    if not usable:
        raise PgBackRestError("the repository holds no usable backup set: take one first "
                              "(ansible-playbook playbooks/pgbackrest.yml -e pgbackrest_backup_type=full)")
    if label:
        found = [b for b in usable if b["label"] == label]
        if not found:
            raise PgBackRestError("backup set %s is not in the repository (or has errors); sets: %s"
                                  % (label, ", ".join(b["label"] for b in usable)))
        chosen = found[0]
        if target is not None and parse_time(chosen["stop"]) >= parse_time(target):
            raise TargetBeforeBackupsError(
                "backup set %s finished at %s, after the target time %s: it cannot be replayed back to it; "
                "choose an older set or leave db_restore_physical_set empty"
                % (label, chosen["stop"], iso(parse_time(target))))
        return chosen
    if target is None:
        return usable[-1]
    when = parse_time(target)
    before = [b for b in usable if parse_time(b["stop"]) < when]
    if not before:
        oldest = usable[0]
        raise TargetBeforeBackupsError(
            "the target time %s is before the oldest backup set (%s, finished %s): no physical backup can reach it. "
            "Restore the newest S3 dump taken before it instead (db_restore_path=logical), or choose a later target."
            % (iso(when), oldest["label"], oldest["stop"]))
    return before[-1]


# --------------------------------------------------------------------------- verify

_STATUS = re.compile(r"^\s*status:\s*(\S+)", re.M)
_COUNTS = re.compile(r"\b(missing|checksum invalid|size invalid|other):\s*(\d+)")
_PART = re.compile(r"^\s*(archiveId|backup):\s*([^,\s]+)(?:,\s*status:\s*(\w+))?", re.M)


def parse_verify(text: str) -> dict:
    """The outcome of ``pgbackrest verify --output=text`` read from its output, whatever its exit code.

    2.45 prints, per stanza, ``status: ok|error``, then per archive id and per backup set the files checked and
    ``missing/checksum invalid/size invalid/other`` counts (a backup set also says ``status: valid|invalid``).
    ``ok`` is true only when a stanza status is printed, every one is ``ok``, every backup set is ``valid`` and every
    count is 0: an empty or truncated output proves nothing.
    """
    text = text or ""
    statuses = _STATUS.findall(text)
    counts: dict = {}
    for kind, n in _COUNTS.findall(text):
        counts[kind] = counts.get(kind, 0) + int(n)
    bad_counts = {k: v for k, v in counts.items() if v}
    problems = ["backup %s: %s" % (name, st) for kind, name, st in _parse_parts(text)
                if kind == "backup" and st != "valid"]
    problems += ["%d file(s) %s" % (v, k) for k, v in sorted(bad_counts.items())]
    ok = bool(statuses) and all(s == "ok" for s in statuses) and not bad_counts and not problems
    return {"ok": ok, "statuses": statuses, "error_counts": bad_counts, "problems": problems[:20]}


def _parse_parts(text):
    return [(m.group(1), m.group(2), m.group(3) or "") for m in _PART.finditer(text)]


# --------------------------------------------------------------------------- archiving and RPO


def archive_rpo(archiver: dict, now, objective_seconds: float) -> dict:
    """RPO arithmetic from a pg_stat_archiver row: how much WAL is not yet safe in the repository.

    ``archiver``: {last_archived_time, last_failed_time, failed_count, archive_mode, archive_timeout}.
    The exposure is the time since the last segment reached the archive; when archiving is failing (the last
    failure is newer than the last success) the exposure grows without bound and the check fails whatever its age.
    """
    now_dt = parse_time(now)
    mode = (archiver.get("archive_mode") or "").lower()
    last_ok = archiver.get("last_archived_time")
    last_fail = archiver.get("last_failed_time")
    out = {"archive_mode": mode, "last_archived_time": None, "last_failed_time": None,
           "failing": False, "seconds": None, "objective_seconds": objective_seconds, "ok": False, "message": ""}
    if mode not in ("on", "always"):
        out["message"] = ("archive_mode is %r: WAL is not archived, so the RPO is the age of the last backup; "
                          "run playbooks/pgbackrest.yml with pgbackrest_allow_restart=true" % (mode or "unknown"))
        return out
    ok_dt = parse_time(last_ok) if last_ok else None
    fail_dt = parse_time(last_fail) if last_fail else None
    out["last_archived_time"] = iso(ok_dt) if ok_dt else None
    out["last_failed_time"] = iso(fail_dt) if fail_dt else None
    out["failing"] = bool(fail_dt and (ok_dt is None or fail_dt > ok_dt))
    if ok_dt is None:
        out["message"] = "no WAL segment has been archived yet: check archive_command and `pgbackrest check`"
        return out
    seconds = round(max(0.0, (now_dt - ok_dt).total_seconds()), 1)
    out["seconds"] = seconds
    if out["failing"]:
        out["message"] = ("archive_command is failing (last failure %s, last success %s): %.0f s of WAL and growing "
                          "are not in the repository; read the server log for the archive_command error, fix the "
                          "repository, then run `pgbackrest check`"
                          % (out["last_failed_time"], out["last_archived_time"], seconds))
        return out
    if seconds > objective_seconds:
        out["message"] = ("the last WAL segment was archived %.0f s ago, over the RPO objective of %.0f s: is the "
                          "server writing, and is archive_timeout set?" % (seconds, objective_seconds))
        return out
    out["ok"] = True
    out["message"] = "last WAL archived %.0f s ago (objective %.0f s)" % (seconds, objective_seconds)
    return out


def recovery_reached(target, last_replay, end_of_backup) -> dict:
    """Did replay reach the target time? ``last_replay`` is pg_last_xact_replay_timestamp() of the restored
    cluster (None when no transaction was replayed after the backup), ``end_of_backup`` the backup set's stop.

    A restore whose last replayed transaction is after the target replayed too far (never expected: PostgreSQL
    stops before it); one whose WAL ends long before the target lost more than the archive promised, which the
    caller reports as data lost. Returns {ok, lag_seconds, message}.
    """
    tgt = parse_time(target)
    last = parse_time(last_replay) if last_replay else parse_time(end_of_backup)
    lag = (tgt - last).total_seconds()
    if lag < 0:
        return {"ok": False, "lag_seconds": round(lag, 3),
                "message": "the restored cluster replayed a transaction of %s, after the target %s"
                           % (iso(last), iso(tgt))}
    return {"ok": True, "lag_seconds": round(lag, 3),
            "message": "replayed up to %s, %.1f s before the target %s" % (iso(last), lag, iso(tgt))}


# --------------------------------------------------------------------------- running it


def as_user_argv(os_user: str, argv: list[str]) -> list[str]:
    """Run argv as the database's OS user: directly when we are that user, with runuser as root, else sudo -n."""
    try:
        import pwd
        me = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        me = None
    if not os_user or me == os_user:
        return list(argv)
    if os.geteuid() == 0:
        return ["runuser", "-u", os_user, "--"] + list(argv)
    return ["sudo", "-n", "-u", os_user, "--"] + list(argv)


def pgbackrest_argv(binary: str, config: str, stanza: str, command: str, options: dict | None = None) -> list[str]:
    """``pgbackrest --config=.. --stanza=.. [--opt=value ..] command``: every option as --name=value."""
    argv = [binary]
    if config:
        argv.append("--config=%s" % config)
    if stanza:
        argv.append("--stanza=%s" % stanza)
    for name, value in (options or {}).items():
        if value is None or value == "":
            continue
        if value is True:
            argv.append("--%s" % name)
        elif value is False:
            argv.append("--no-%s" % name)
        else:
            argv.append("--%s=%s" % (name, value))
    argv.append(command)
    return argv


# --------------------------------------------------------------------------- recorded verification
# `pgbackrest verify` (2.45) reads the whole repository: 25 s of a 98 s restore on bench data. The pgbackrest role
# runs it in the background after each backup and records the result here; a restore of a set that the record
# covers, whose backup.manifest is byte for byte the one verified, skips its own verify. A repository file damaged
# after the record is still refused before any switch: the restore checks what it reads (the lz4 frame checksum in
# the lab, tests/integration/test_db_restore_physical.py; pgBackRest's per-file SHA-1 against the manifest too).

VERIFY_RECORD_FORMAT = "agbotkit-pgbackrest-verify/1"


def manifest_path(stanza: str, label: str) -> str:
    """The set's manifest as `pgbackrest repo-get` names it (any repository type)."""
    return "backup/%s/%s/backup.manifest" % (stanza, label)


def verify_record_path(record_dir: str, stanza: str) -> str:
    return os.path.join(record_dir, "%s.json" % stanza)


def make_verify_record(stanza: str, verify: dict, manifests: dict, started, seconds: float) -> dict:
    """What a verify found, bound to the SHA-256 of each set's backup.manifest read before it started."""
    return {"format": VERIFY_RECORD_FORMAT, "stanza": stanza, "ok": bool(verify.get("ok")),
            "started": iso(parse_time(started)), "seconds": seconds, "statuses": verify.get("statuses", []),
            "problems": verify.get("problems", []),
            "sets": {label: {"manifest_sha256": digest} for label, digest in sorted(manifests.items())}}


def record_covers(record, stanza: str, label: str, manifest_sha256: str) -> tuple[bool, str]:
    """(True, when) when the record says set `label` was verified clean with this very manifest; else (False, why)."""
    if not isinstance(record, dict) or record.get("format") != VERIFY_RECORD_FORMAT:
        return False, "no recorded verification"
    if record.get("stanza") != stanza:
        return False, "the recorded verification is of stanza %s" % record.get("stanza")
    if record.get("ok") is not True:
        return False, "the last recorded verification (%s) found the repository damaged: %s" % (
            record.get("started"), "; ".join(record.get("problems") or []) or "status not ok")
    entry = (record.get("sets") or {}).get(label)
    if not isinstance(entry, dict):
        return False, "backup set %s was not in the last recorded verification (%s)" % (label, record.get("started"))
    if not manifest_sha256 or entry.get("manifest_sha256") != manifest_sha256:
        return False, "the manifest of backup set %s changed since it was verified (%s)" % (
            label, record.get("started"))
    return True, "backup set %s verified clean at %s" % (label, record.get("started"))

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbackrest
short_description: Run a pgBackRest command as the database's OS user and read its result
version_added: 0.3.0
description:
  - Runs one of C(stanza-create), C(check), C(backup), C(expire), C(verify) or C(info) for a stanza, as the
    database's OS user (O(os_user)), and returns the stanza's backup sets read from C(pgbackrest info --output=json).
  - "C(verify) is judged by its output, not its exit code: pgBackRest 2.45 exits 0 on a corrupted repository file
    and only prints C(status: invalid). The module fails when any status is not C(ok), or when no status is printed."
  - C(stanza-create) reports a change only when the stanza was not in the repository before; C(check),
    C(verify) and C(info) never change anything; C(backup) and C(expire) always report a change.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  command:
    description: The pgBackRest command.
    type: str
    required: true
    choices: [stanza-create, check, backup, expire, verify, info]
  stanza:
    description: The stanza (one per database cluster).
    type: str
    required: true
  config:
    description: The pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  os_user:
    description:
      - The OS user pgBackRest runs as, the database's (C(postgres)). Run as root, the module uses C(runuser);
        as another user, C(sudo -n).
    type: str
    default: postgres
  binary:
    description: The pgbackrest executable.
    type: str
    default: pgbackrest
  backup_type:
    description: With O(command=backup), the kind of backup.
    type: str
    choices: [full, diff, incr]
    default: incr
  options:
    description:
      - "Extra command-line options, as C(name) to value (V(true) for a bare flag), for example C(process-max) 2."
    type: dict
    default: {}
  timeout:
    description: Seconds the command may take.
    type: int
    default: 3600
  record_dir:
    description:
      - "With O(command=verify): record the result in C(<record_dir>/<stanza>.json) (mode 0600), bound to the
        SHA-256 of each backup set's C(backup.manifest) read (C(pgbackrest repo-get)) before the verify started. A
        physical restore of a set the record covers, with the same manifest, skips its own verify
        (M(agbotkit.dr.pgbackrest_restore) O(agbotkit.dr.pgbackrest_restore#module:verify_record_dir)). A damaged
        repository is recorded too (C(ok) false), so no older clean record survives it. Empty - nothing recorded."
    type: path
    default: ""
attributes:
  check_mode:
    support: full
    description: C(info), C(check) and C(verify) run in check mode; the others report the change they would make.
  diff_mode:
    support: none
    description: Nothing to diff.
notes:
  - The repository is untrusted input; a physical restore runs C(verify) first (M(agbotkit.dr.pgbackrest_restore)).
seealso:
  - module: agbotkit.dr.pgbackrest_restore
  - name: pgBackRest command reference
    description: Every command and option.
    link: https://pgbackrest.org/command.html
"""

EXAMPLES = r"""
- name: Take a full backup
  agbotkit.dr.pgbackrest:
    command: backup
    backup_type: full
    stanza: ag_botkit

- name: Verify the repository (fails on status invalid, whatever the exit code)
  agbotkit.dr.pgbackrest:
    command: verify
    stanza: ag_botkit
"""

RETURN = r"""
info:
  description: The stanza as read from C(pgbackrest info --output=json) after the command.
  returned: always, unless the stanza is missing before C(stanza-create) in check mode
  type: dict
  sample: {"stanza": "ag_botkit", "status_code": 0, "status_message": "ok", "archive_min": "000000010000000000000001",
           "archive_max": "000000010000000000000009",
           "backups": [{"label": "20261201-153000F", "type": "full", "start": "2026-12-01T15:30:00Z",
                        "stop": "2026-12-01T15:30:06Z", "size": 385000000}]}
record:
  description: With O(command=verify) and O(record_dir), the record written.
  returned: when a verify was recorded
  type: str
verify:
  description: With O(command=verify), its output read (its C(ok) is the verdict, not the exit code).
  returned: when O(command=verify)
  type: dict
  sample: {"ok": false, "statuses": ["invalid"], "error_counts": {"checksum invalid": 1}, "problems": []}
cmd:
  description: The command line run (no secrets are ever on it; they live in the configuration file).
  returned: when a command ran
  type: list
  elements: str
seconds:
  description: Wall seconds the command took.
  returned: when a command ran
  type: float
"""

import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import PgBackRestError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pgbackrest import (  # noqa: E402
    as_user_argv, make_verify_record, manifest_path, parse_info, parse_verify, pgbackrest_argv, verify_record_path,
    with_advice)


def run_command(module, argv, timeout):
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"}, check_rc=False)
    return rc, out, err


def read_info(module, p, missing_ok=False):
    argv = as_user_argv(p["os_user"], pgbackrest_argv(p["binary"], p["config"], p["stanza"], "info",
                                                      {"output": "json"}))
    rc, out, err = run_command(module, argv, p["timeout"])
    if rc != 0:
        text = (err or out).strip()
        raise PgBackRestError(with_advice("Failed to read pgbackrest info of stanza %s (exit %s): %s"
                                          % (p["stanza"], rc, text[-1500:]), text))
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise PgBackRestError("pgbackrest info did not print JSON: %s" % exc) from exc
    info = parse_info(doc, p["stanza"])
    if missing_ok and info["status_code"] == 1:  # "missing stanza path"
        return None
    if info["status_code"] == 99 and info["repo_errors"]:  # the repository could not be read at all
        text = "; ".join(info["repo_errors"])
        raise PgBackRestError(with_advice("Failed to read the repository of stanza %s with %s: %s"
                                          % (p["stanza"], p["config"], text[-1500:]), text))
    return info


def read_manifest_digests(module, p):
    """{label: sha256 of its backup.manifest} of every set in the repository now."""
    out = {}
    for b in read_info(module, p)["backups"]:
        argv = as_user_argv(p["os_user"], pgbackrest_argv(p["binary"], p["config"], p["stanza"], "repo-get")
                            + [manifest_path(p["stanza"], b["label"])])
        rc, so, se = module.run_command(argv, environ_update={"LC_ALL": "C"}, check_rc=False, encoding=None)
        if rc != 0:
            raise PgBackRestError("Failed to read the manifest of backup set %s (exit %s): %s"
                                  % (b["label"], rc, (se or so).decode("utf-8", "replace").strip()[-1000:]))
        out[b["label"]] = hashlib.sha256(so).hexdigest()
    return out


def write_record(p, record):
    os.makedirs(p["record_dir"], mode=0o700, exist_ok=True)
    path = verify_record_path(p["record_dir"], p["stanza"])
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def run(module, out):
    """Run the command. out is the result (also reported on failure); an early end is a return, a failure a
    PgBackRestError, which run_module reports with fail_json."""
    p = module.params
    command = p["command"]
    before = read_info(module, p, missing_ok=True) if command == "stanza-create" else None
    if command == "stanza-create" and before is not None and before["status_code"] in (0, 2):
        out["info"] = before
        return
    writes = command in ("stanza-create", "backup", "expire")
    if writes and module.check_mode:
        out["changed"] = True
        return
    opts = dict(p["options"])
    if command == "backup":
        opts.setdefault("type", p["backup_type"])
    if command == "verify":
        opts.setdefault("output", "text")
        opts.setdefault("verbose", True)
    argv = as_user_argv(p["os_user"], pgbackrest_argv(p["binary"], p["config"], p["stanza"], command, opts))
    manifests = None
    if command == "verify" and p["record_dir"] and not module.check_mode:
        manifests = read_manifest_digests(module, p)
    started = time.time()
    t0 = time.monotonic()
    rc, stdout, stderr = run_command(module, argv, p["timeout"])
    out["seconds"] = round(time.monotonic() - t0, 2)
    out["cmd"] = argv
    if command == "verify":
        res = parse_verify(stdout + "\n" + stderr)
        if rc != 0:
            res = dict(res, ok=False)
        out["verify"] = res
        if manifests is not None:
            out["record"] = write_record(p, make_verify_record(p["stanza"], res, manifests, started,
                                                               out["seconds"]))
        if rc != 0 or not res["ok"]:
            raise PgBackRestError(
                "pgbackrest verify found the repository of stanza %s damaged (exit %s, status %s%s%s): do not "
                "restore from it; take a new full backup (pgbackrest_backup_type=full) and investigate the "
                "repository's storage" % (p["stanza"], rc, ", ".join(res["statuses"]) or "missing",
                                          "; " if res["problems"] else "", "; ".join(res["problems"])))
    elif rc != 0:
        text = (stderr or stdout).strip()
        raise PgBackRestError(with_advice("Failed to run pgbackrest %s for stanza %s (exit %s): %s"
                                          % (command, p["stanza"], rc, text[-2000:]), text))
    out["changed"] = writes
    out["info"] = read_info(module, p)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            command=dict(type="str", required=True,
                         choices=["stanza-create", "check", "backup", "expire", "verify", "info"]),
            stanza=dict(type="str", required=True),
            config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
            os_user=dict(type="str", default="postgres"),
            binary=dict(type="str", default="pgbackrest"),
            backup_type=dict(type="str", choices=["full", "diff", "incr"], default="incr"),
            options=dict(type="dict", default={}),
            timeout=dict(type="int", default=3600),
            record_dir=dict(type="path", default=""),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

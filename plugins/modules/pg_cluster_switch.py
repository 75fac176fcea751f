#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_cluster_switch
short_description: Put a verified restored PostgreSQL data directory in place of the live one, keeping the old
version_added: 0.3.0
description:
  - The last step of a physical restore. Refuses unless O(state_file) records the restore as C(verified)
    (by M(agbotkit.dr.pgbackrest_restore) with O(agbotkit.dr.pgbackrest_restore#module:state=verified)) for the
    backup set and target the caller names - the switch checks the recorded result, never task order.
  - Stops the restored cluster, stops the live one, renames the live data directory to
    C(<data_dir>.replaced-<timestamp>) (kept until someone removes it), renames the restored directory into
    place and starts the server the way it was started (O(service)). If the new cluster does not start, the old
    directory is put back and started, and the module fails.
  - Idempotent - a state of C(switched) for the same set and target changes nothing.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  data_dir:
    description: The live data directory.
    type: path
    required: true
  restore_dir:
    description: The verified restored data directory (same file system as O(data_dir)).
    type: path
    required: true
  state_file:
    description: The state file of M(agbotkit.dr.pgbackrest_restore).
    type: path
    required: true
  backup_label:
    description: The backup set the caller verified; must equal the recorded one.
    type: str
    required: true
  target_time:
    description:
      - The target the caller verified (as returned by M(agbotkit.dr.pgbackrest_restore)); must equal the recorded one.
    type: str
    default: ""
  service:
    description:
      - How the server is stopped and started. V(pg_ctl) starts it again with the command-line options it was
        running with (read from C(postmaster.opts)); V(systemd) stops and starts O(systemd_unit).
    type: str
    choices: [pg_ctl, systemd]
    default: pg_ctl
  systemd_unit:
    description: With O(service=systemd), the unit (Debian - C(postgresql@15-main)).
    type: str
    default: postgresql@15-main
  log_file:
    description: With O(service=pg_ctl), the server log (default C(<data_dir>/server.log)).
    type: path
  os_user:
    description: The database's OS user.
    type: str
    default: postgres
  pg_bin:
    description: Folder of the PostgreSQL server binaries.
    type: path
    default: /usr/lib/postgresql/15/bin
  timeout:
    description: Seconds to wait for each stop and start.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Checks the recorded state and reports the switch it would make.
  diff_mode:
    support: none
    description: Nothing to diff.
seealso:
  - module: agbotkit.dr.pgbackrest_restore
"""

EXAMPLES = r"""
- name: Switch the verified restore in
  agbotkit.dr.pg_cluster_switch:
    data_dir: /var/lib/postgresql/15/main
    restore_dir: /var/lib/postgresql/15/main.pitr
    state_file: /var/lib/postgresql/15/agbotkit-physical-restore.json
    backup_label: 20261201-130000F
    target_time: "2026-12-01T14:01:59Z"
    service: systemd
"""

RETURN = r"""
replaced_dir:
  description: Where the old data directory was kept.
  returned: when switched
  type: str
seconds:
  description: Wall seconds of the switch (the live database's downtime).
  returned: when switched
  type: float
"""

import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import PgBackRestError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pgbackrest import (  # noqa: E402
    as_user_argv, iso, parse_time, pg_time)


def postmaster_args(data_dir):
    """The options the live postmaster runs with (postmaster.opts), without the binary and -D."""
    with open(os.path.join(data_dir, "postmaster.opts")) as fh:
        argv = shlex.split(fh.read())
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "-D":
            skip = True
            continue
        args.append(a)
    return args


def run(module: AnsibleModule, out: dict) -> None:
    p = module.params
    pg_ctl = os.path.join(p["pg_bin"], "pg_ctl")

    def command(argv, what, check=True, as_user=True):
        full = as_user_argv(p["os_user"], argv) if as_user else argv
        rc, so, se = module.run_command(full, check_rc=False)
        if check and rc != 0:
            raise PgBackRestError("Failed to %s (exit %s): %s" % (what, rc, (se or so).strip()[-1500:]))
        return rc

    def start_live(args):
        if p["service"] == "systemd":
            command(["systemctl", "start", p["systemd_unit"]], "start %s" % p["systemd_unit"], as_user=False)
        else:
            log = p["log_file"] or os.path.join(p["data_dir"], "server.log")
            command([pg_ctl, "-D", p["data_dir"], "-l", log, "-o", shlex.join(args), "-w", "-t", str(p["timeout"]),
                     "start"], "start the server on %s" % p["data_dir"])

    def stop_live():
        if p["service"] == "systemd":
            command(["systemctl", "stop", p["systemd_unit"]], "stop %s" % p["systemd_unit"], as_user=False)
        else:
            command([pg_ctl, "-D", p["data_dir"], "-m", "fast", "-w", "-t", str(p["timeout"]), "stop"],
                    "stop the live server")

    try:
        try:
            with open(p["state_file"]) as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            state = {}
        target = pg_time(parse_time(p["target_time"])) if p["target_time"] else ""
        if state.get("backup", {}).get("label") != p["backup_label"] or state.get("target_time", "") != target:
            raise PgBackRestError(
                "the recorded restore (set %s, target %s) is not the one verified here (set %s, target %s): refusing "
                "to switch" % (state.get("backup", {}).get("label"), state.get("target_time") or "latest",
                               p["backup_label"], target or "latest"))
        if state.get("status") == "switched":
            out["replaced_dir"] = state.get("replaced_dir")
            return
        if state.get("status") != "verified":
            raise PgBackRestError("the restored cluster in %s is recorded as %r, not verified: refusing to switch; "
                                  "re-run the restore so that it is verified first"
                                  % (p["restore_dir"], state.get("status", "missing")))
        if not os.path.isfile(os.path.join(p["restore_dir"], "PG_VERSION")):
            raise PgBackRestError("%s holds no data directory: refusing to switch" % p["restore_dir"])
        if os.stat(os.path.dirname(os.path.realpath(p["restore_dir"]))).st_dev != \
                os.stat(os.path.dirname(os.path.realpath(p["data_dir"]))).st_dev:
            raise PgBackRestError("%s and %s are on different file systems: the switch must be a rename"
                                  % (p["restore_dir"], p["data_dir"]))
        replaced = "%s.replaced-%s" % (p["data_dir"].rstrip("/"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        out.update(changed=True, replaced_dir=replaced)
        if module.check_mode:
            return
        args = postmaster_args(p["data_dir"]) if p["service"] == "pg_ctl" else []
        t0 = time.monotonic()
        command([pg_ctl, "-D", p["restore_dir"], "-m", "fast", "-w", "-t", str(p["timeout"]), "stop"],
                "stop the restored cluster", check=False)
        stop_live()
        os.rename(p["data_dir"], replaced)
        os.rename(p["restore_dir"], p["data_dir"])
        try:
            start_live(args)
        except PgBackRestError as exc:
            os.rename(p["data_dir"], p["restore_dir"])
            os.rename(replaced, p["data_dir"])
            start_live(args)
            raise PgBackRestError("the restored cluster did not start in place (%s); the old data directory was put "
                                  "back and started, the restore kept in %s" % (exc, p["restore_dir"])) from exc
        out["seconds"] = round(time.monotonic() - t0, 2)
        state.update(status="switched", replaced_dir=replaced, switched_at=iso(parse_time(time.time())))
        with open(p["state_file"], "w") as fh:
            json.dump(state, fh, indent=2)
    except (OSError, ValueError) as exc:  # the state file, a rename, a time that does not parse
        raise PgBackRestError(str(exc)) from exc


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type="path", required=True),
            restore_dir=dict(type="path", required=True),
            state_file=dict(type="path", required=True),
            backup_label=dict(type="str", required=True),
            target_time=dict(type="str", default=""),
            service=dict(type="str", choices=["pg_ctl", "systemd"], default="pg_ctl"),
            systemd_unit=dict(type="str", default="postgresql@15-main"),
            log_file=dict(type="path"),
            os_user=dict(type="str", default="postgres"),
            pg_bin=dict(type="path", default="/usr/lib/postgresql/15/bin"),
            timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

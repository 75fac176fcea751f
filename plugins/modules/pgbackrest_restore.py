#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbackrest_restore
short_description: Restore a pgBackRest backup into a new data directory and replay WAL on a spare port
version_added: 0.3.0
description:
  - The physical half of a point-in-time restore, never over the live cluster. Chooses the backup set (the newest
    that finished before O(target_time), or the newest for a restore to the latest WAL), checks the repository with
    C(pgbackrest verify) judged by its output (it exits 0 on a corrupted file), restores into O(restore_dir),
    starts that cluster on O(port) with archiving paused (nothing is archived from it, its WAL and new timeline's
    history file are kept for the server to archive once switched in), waits until replay has reached the target
    and the cluster is promoted, and reads where replay stopped.
  - Its state is recorded in O(state_file) (C(restoring), C(ready), and later C(verified) and C(switched) by
    M(agbotkit.dr.pg_cluster_switch)). A re-run with the same set and target finds the cluster ready and changes
    nothing; a restore that stopped half-way (the cluster died mid-replay, the host rebooted) is removed and
    done again. The live data directory is never touched.
  - O(state=absent) stops the spare cluster and removes O(restore_dir) (after a failed verification, on request).
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  state:
    description: V(present) restores and starts; V(verified) records that the caller verified the running cluster
      (the switch refuses anything else); V(absent) stops and removes it.
    type: str
    choices: [present, verified, absent]
    default: present
  stanza:
    description: The pgBackRest stanza.
    type: str
    required: true
  config:
    description: The pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  os_user:
    description: The database's OS user; every command runs as it.
    type: str
    default: postgres
  pg_bin:
    description: Folder of the PostgreSQL server binaries (pg_ctl).
    type: path
    default: /usr/lib/postgresql/15/bin
  data_dir:
    description: The live cluster's data directory; the module refuses to restore into it or inside it.
    type: path
    required: true
  restore_dir:
    description: The new data directory (beside the live one, so that the switch is a rename on one file system).
    type: path
    required: true
  state_file:
    description: Where the restore's progress is recorded (JSON).
    type: path
    required: true
  port:
    description: The spare port the restored cluster listens on (127.0.0.1 only).
    type: int
    required: true
  socket_dir:
    description: The restored cluster's Unix-socket folder.
    type: path
    default: /tmp
  target_time:
    description: Replay up to this time (ISO 8601; no offset means UTC), exclusive. Empty replays all archived WAL.
    type: str
    default: ""
  set:
    description: Restore this backup set (label) instead of choosing one.
    type: str
    default: ""
  verify_repository:
    description: Run C(pgbackrest verify) before restoring and refuse a repository it does not call C(ok).
    type: bool
    default: true
  verify_record_dir:
    description:
      - "Where M(agbotkit.dr.pgbackrest) O(agbotkit.dr.pgbackrest#module:record_dir) records its verifications. When
        the record says the set to restore was verified clean and the set's C(backup.manifest) (read now with
        C(pgbackrest repo-get)) has the SHA-256 recorded, the verify is not run again; otherwise (no record, a
        damaged one, another set, a changed manifest) it runs as without a record. A repository file damaged after
        the record still stops the restore before any switch - the restore checks what it reads (lz4 frame
        checksums, pgBackRest's per-file checksum against the manifest). Empty - always verify."
    type: path
    default: ""
  process_max:
    description: pgBackRest's C(process-max) for the restore.
    type: int
    default: 2
  server_options:
    description: Extra C(-c name=value) settings for the restored cluster while it replays and is verified.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the restore and for replay to finish.
    type: int
    default: 3600
  verified_by:
    description: With O(state=verified), what verified the cluster (recorded; e.g. the tables and checks).
    type: dict
    default: {}
  db_user:
    description: The superuser the module connects as over O(socket_dir) (peer or trust authentication)
      to follow replay.
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Chooses the set and reads the state; restores, starts and removes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
seealso:
  - module: agbotkit.dr.pgbackrest
  - module: agbotkit.dr.pg_cluster_switch
"""

EXAMPLES = r"""
- name: Restore to one second before the bad deploy, on port 5433
  agbotkit.dr.pgbackrest_restore:
    stanza: ag_botkit
    data_dir: /var/lib/postgresql/15/main
    restore_dir: /var/lib/postgresql/15/main.pitr
    state_file: /var/lib/postgresql/15/agbotkit-physical-restore.json
    port: 5433
    target_time: "2026-12-01T14:01:59Z"
"""

RETURN = r"""
backup:
  description: The backup set restored.
  returned: always
  type: dict
  sample: {"label": "20261201-130000F", "type": "full", "stop": "2026-12-01T13:00:06Z"}
target_time:
  description: The target as given to PostgreSQL (UTC), or empty for the latest WAL.
  returned: always
  type: str
replayed_to:
  description: The last transaction replayed (pg_last_xact_replay_timestamp), UTC; null when none after the backup.
  returned: when the cluster is up
  type: str
lag_seconds:
  description: Seconds between the last replayed transaction and the target (the data a restore to T gives up).
  returned: when a target time was given and the cluster is up
  type: float
timeline:
  description: The restored cluster's timeline after promotion.
  returned: when the cluster is up
  type: int
port:
  description: The port the restored cluster listens on.
  returned: always
  type: int
verify:
  description:
    - The result of C(pgbackrest verify) read from its output (C(source) V(verify)), or the record relied on
      (C(source) V(record), C(record) saying when). C(record_problem) says why a record was not used.
  returned: when it ran or a record was used
  type: dict
status:
  description: The recorded state (C(ready), C(verified), C(switched), C(absent)).
  returned: always
  type: str
seconds:
  description: Wall seconds per part (verify, restore, replay).
  returned: always
  type: dict
"""

import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import PgBackRestError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pgbackrest import (  # noqa: E402
    as_user_argv, choose_backup, iso, manifest_path, parse_info, parse_time, parse_verify, pg_time, pgbackrest_argv,
    record_covers, recovery_reached, verify_record_path, with_advice)


def load_state(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(state, fh, indent=2)
    os.replace(tmp, path)


class Restorer:
    def __init__(self, module):
        self.m = module
        self.p = module.params
        self.seconds = {}

    def run(self, argv, what, check=True):
        rc, out, err = self.m.run_command(as_user_argv(self.p["os_user"], argv),
                                          environ_update={"LC_ALL": "C"}, check_rc=False)
        if check and rc != 0:
            text = (err or out).strip()
            raise PgBackRestError(with_advice("Failed to %s (exit %s): %s" % (what, rc, text[-2000:]), text))
        return rc, out, err

    def brest(self, command, opts=None, check=True, what=None):
        return self.run(pgbackrest_argv("pgbackrest", self.p["config"], self.p["stanza"], command, opts),
                        what or "run pgbackrest %s" % command, check)

    def recorded(self, label):
        """(True, when) if the verification record covers set `label` with its manifest as it is now."""
        path = verify_record_path(self.p["verify_record_dir"], self.p["stanza"])
        try:
            with open(path) as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            return False, "no readable verification record at %s" % path
        argv = pgbackrest_argv("pgbackrest", self.p["config"], self.p["stanza"], "repo-get") + [
            manifest_path(self.p["stanza"], label)]
        rc, so, se = self.m.run_command(as_user_argv(self.p["os_user"], argv), environ_update={"LC_ALL": "C"},
                                        check_rc=False, encoding=None)
        if rc != 0:
            return False, "the manifest of backup set %s cannot be read (exit %s)" % (label, rc)
        return record_covers(record, self.p["stanza"], label, hashlib.sha256(so).hexdigest())

    def info(self):
        _rc, out, _err = self.brest("info", {"output": "json"}, what="read pgbackrest info")
        try:
            info = parse_info(json.loads(out), self.p["stanza"])
        except ValueError as exc:
            raise PgBackRestError("pgbackrest info did not print JSON: %s" % exc) from exc
        if info["status_code"] == 99 and info["repo_errors"]:  # the repository could not be read at all
            text = "; ".join(info["repo_errors"])
            raise PgBackRestError(with_advice("Failed to read the repository of stanza %s with %s: %s"
                                              % (self.p["stanza"], self.p["config"], text[-1500:]), text))
        return info

    def psql(self, sql):
        argv = [os.path.join(self.p["pg_bin"], "psql"), "-X", "-At", "-h", self.p["socket_dir"],
                "-p", str(self.p["port"]), "-U", self.p["db_user"], "-d", "postgres", "-c", sql]
        rc, out, err = self.run(argv, "query the restored cluster", check=False)
        return rc, out.strip(), err.strip()

    def running(self):
        rc, _o, _e = self.run([os.path.join(self.p["pg_bin"], "pg_ctl"), "-D", self.p["restore_dir"], "status"],
                              "pg_ctl status", check=False)
        return rc == 0

    def stop(self):
        if os.path.isdir(self.p["restore_dir"]) and self.running():
            self.run([os.path.join(self.p["pg_bin"], "pg_ctl"), "-D", self.p["restore_dir"], "-m", "fast", "-w",
                      "-t", "120", "stop"], "stop the restored cluster")

    def remove(self):
        self.stop()
        if os.path.isdir(self.p["restore_dir"]):
            shutil.rmtree(self.p["restore_dir"])

    def log_tail(self):
        path = os.path.join(self.p["restore_dir"], "restore-replay.log")
        try:
            with open(path, errors="replace") as fh:
                return fh.read()[-1500:]
        except OSError:
            return "(no log at %s)" % path

    def start(self):
        opts = {"port": str(self.p["port"]), "listen_addresses": "127.0.0.1",
                "unix_socket_directories": self.p["socket_dir"],
                # archive_mode on with an empty command: nothing leaves the spare (a discarded restore must not put
                # its timeline in the archive), yet every finished segment and the new timeline's history file are
                # kept marked .ready, so the server archives them once switched in (documented PostgreSQL behaviour)
                "archive_mode": "on", "archive_command": "",
                "hot_standby": "on"}
        opts.update({k: str(v) for k, v in self.p["server_options"].items()})
        o = " ".join("-c %s" % shlex.quote("%s=%s" % kv) for kv in opts.items())
        rc, out, err = self.run([os.path.join(self.p["pg_bin"], "pg_ctl"), "-D", self.p["restore_dir"], "-l",
                                 os.path.join(self.p["restore_dir"], "restore-replay.log"), "-o", o, "-w", "-t",
                                 str(self.p["timeout"]), "start"], "start the restored cluster", check=False)
        if rc != 0:
            raise PgBackRestError("The restored cluster in %s did not start (%s). Its log ends:\n%s\nThe live cluster "
                                  "is untouched; re-run to restore again."
                                  % (self.p["restore_dir"], (err or out).strip(), self.log_tail()))

    def wait_promoted(self):
        deadline = time.monotonic() + self.p["timeout"]
        err = ""
        while time.monotonic() < deadline:
            rc, out, err = self.psql("SELECT pg_is_in_recovery()")
            if rc == 0 and out == "f":
                return
            if rc != 0 and ("does not exist" in err or "authentication failed" in err):
                raise PgBackRestError("cannot connect to the restored cluster on port %s over the socket in %s as %s: "
                                      "%s; set db_user (db_restore_physical_superuser) to a superuser that connects "
                                      "there without a password" % (self.p["port"], self.p["socket_dir"],
                                                                    self.p["db_user"], err))
            if not self.running():
                tail = self.log_tail()
                if "recovery ended before configured recovery target was reached" in tail:
                    raise PgBackRestError(
                        "The archived WAL ends before the target time: no transaction after the target is in the "
                        "archive, so PostgreSQL cannot prove it reached it. Is archiving working (readiness.yml), and "
                        "is the target in the past? Restore to the latest archived WAL instead (leave "
                        "db_restore_target_time empty, with db_restore_path=physical). The live cluster is untouched. "
                        "Its log ends:\n%s" % tail)
                raise PgBackRestError(
                    "The restored cluster stopped during WAL replay (it was killed, or the WAL needed to reach the "
                    "target is missing). Its log ends:\n%s\nThe live cluster is untouched; re-run to restore again "
                    "(the half-done restore is removed first)." % self.log_tail())
            time.sleep(0.2)
        raise PgBackRestError("replay did not finish within %s s (timeout; last answer: %s); the restored cluster "
                              "keeps running on port %s: re-run with a larger timeout"
                              % (self.p["timeout"], err or "still in recovery", self.p["port"]))

    def facts(self, target, backup):
        rc, out, err = self.psql("SELECT coalesce(pg_last_xact_replay_timestamp()::text, ''), "
                                 "(SELECT timeline_id FROM pg_control_checkpoint())")
        if rc != 0:
            raise PgBackRestError("cannot query the restored cluster on port %s: %s" % (self.p["port"], err))
        last, tli = out.split("|")
        res = {"replayed_to": iso(parse_time(last)) if last else None, "timeline": int(tli)}
        if target:
            reached = recovery_reached(target, last or None, backup["stop"])
            if not reached["ok"]:
                raise PgBackRestError(reached["message"])
            res["lag_seconds"] = reached["lag_seconds"]
        return res


def run(module, out):
    """Restore (or record, or remove) as module.params say. out is the result, also reported on failure; an early
    end is a return, a failure a PgBackRestError, which run_module reports with fail_json."""
    p = module.params
    r = Restorer(module)
    out.update(port=p["port"], seconds=r.seconds)
    try:
        live = os.path.realpath(p["data_dir"])
        new = os.path.realpath(p["restore_dir"])
        if new == live or new.startswith(live + os.sep) or live.startswith(new + os.sep):
            raise PgBackRestError("restore_dir %s is the live data directory %s or inside it: a restore never goes "
                                  "over the live cluster; choose a sibling folder" % (new, live))
        target = pg_time(parse_time(p["target_time"])) if p["target_time"] else ""
        if target and parse_time(p["target_time"]).timestamp() > time.time():
            raise PgBackRestError("the target time %s is in the future: leave it empty to replay all archived WAL"
                                  % p["target_time"])
        out["target_time"] = iso(parse_time(p["target_time"])) if target else ""
        state = load_state(p["state_file"]) or {}

        if p["state"] == "absent":
            out["status"] = "absent"
            if os.path.exists(p["restore_dir"]):
                out["changed"] = True
                if not module.check_mode:
                    r.remove()
            if state.get("status") != "switched" and os.path.exists(p["state_file"]) and not module.check_mode:
                os.unlink(p["state_file"])
            return

        if p["state"] == "verified":
            if state.get("status") not in ("ready", "verified") or not r.running():
                raise PgBackRestError("there is no restored cluster ready to record as verified (state %s)"
                                      % state.get("status", "missing"))
            out["backup"] = state["backup"]
            out["status"] = "verified"
            if state.get("status") != "verified" and not module.check_mode:
                state.update(status="verified", verified_by=p["verified_by"], verified_at=iso(parse_time(time.time())))
                save_state(p["state_file"], state)
                out["changed"] = True
            return

        info = r.info()
        backup = choose_backup(info["backups"], target or None, p["set"])
        out["backup"] = {k: backup[k] for k in ("label", "type", "start", "stop", "size")}
        same = state.get("backup", {}).get("label") == backup["label"] and state.get("target_time") == target
        if same and state.get("status") == "switched":
            out["status"] = "switched"
            return
        if same and state.get("status") in ("ready", "verified") and r.running():
            out["status"] = state["status"]
            out.update(r.facts(target, backup))
            return
        out["changed"] = True
        if module.check_mode:
            out["status"] = "would restore"
            return

        recorded, why = False, ""
        if p["verify_repository"] and p["verify_record_dir"]:
            t0 = time.monotonic()
            recorded, why = r.recorded(backup["label"])
            r.seconds["verify_record"] = round(time.monotonic() - t0, 2)
            if recorded:
                out["verify"] = {"ok": True, "source": "record", "record": why}
        if p["verify_repository"] and not recorded:
            t0 = time.monotonic()
            rc, so, se = r.brest("verify", {"output": "text", "verbose": True, "process-max": p["process_max"]},
                                 check=False)
            res = parse_verify(so + "\n" + se)
            r.seconds["verify"] = round(time.monotonic() - t0, 2)
            out["verify"] = dict(res, source="verify", record_problem=why or None)
            if rc != 0 or not res["ok"]:
                raise PgBackRestError(
                    "pgbackrest verify found the repository damaged (exit %s, status %s; %s): refusing to restore "
                    "from it. The live cluster is untouched. Take a new full backup, or restore the newest S3 dump "
                    "(db_restore_path=logical)." % (
                        rc, ", ".join(res["statuses"]) or "missing",
                        "; ".join(res["problems"]) or "see pgbackrest verify output"))

        # a half-done restore (killed mid-replay, an old target) is ours to remove: never the live directory
        if os.path.exists(p["restore_dir"]):
            r.remove()
        save_state(p["state_file"], {"status": "restoring", "backup": out["backup"], "target_time": target,
                                     "restore_dir": p["restore_dir"], "port": p["port"]})
        parent = os.path.dirname(new)
        t0 = time.monotonic()
        opts = {"pg1-path": p["restore_dir"], "set": backup["label"], "process-max": p["process_max"]}
        if target:
            opts.update({"type": "time", "target": target, "target-action": "promote", "target-exclusive": True})
        else:
            opts.update({"type": "default"})
        r.brest("restore", opts, what="restore backup set %s into %s (is %s writable by %s?)"
                % (backup["label"], p["restore_dir"], parent, p["os_user"]))
        r.seconds["restore"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        r.start()
        r.wait_promoted()
        r.seconds["replay"] = round(time.monotonic() - t0, 2)
        out.update(r.facts(target, backup))
        out["status"] = "ready"
        save_state(p["state_file"], {"status": "ready", "backup": out["backup"], "target_time": target,
                                     "restore_dir": p["restore_dir"], "port": p["port"],
                                     "replayed_to": out.get("replayed_to"), "timeline": out.get("timeline")})
    except ValueError as exc:  # a time that does not parse, an unexpected answer of the restored cluster
        raise PgBackRestError(str(exc)) from exc


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "verified", "absent"], default="present"),
            stanza=dict(type="str", required=True),
            config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
            os_user=dict(type="str", default="postgres"),
            pg_bin=dict(type="path", default="/usr/lib/postgresql/15/bin"),
            data_dir=dict(type="path", required=True),
            restore_dir=dict(type="path", required=True),
            state_file=dict(type="path", required=True),
            port=dict(type="int", required=True),
            socket_dir=dict(type="path", default="/tmp"),
            target_time=dict(type="str", default=""),
            set=dict(type="str", default=""),
            verify_repository=dict(type="bool", default=True),
            verify_record_dir=dict(type="path", default=""),
            process_max=dict(type="int", default=2),
            server_options=dict(type="dict", default={}),
            timeout=dict(type="int", default=3600),
            verified_by=dict(type="dict", default={}),
            db_user=dict(type="str", default="postgres"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

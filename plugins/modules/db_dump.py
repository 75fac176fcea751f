#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_dump
short_description: Dump a PostgreSQL database and its manifest from one snapshot, with sha256 of every artifact
version_added: 0.1.0
description:
  - Opens a C(REPEATABLE READ) transaction, exports its snapshot, and runs C(pg_dump --snapshot) in the
    parallel-restorable directory format while the manifest (row counts, order-independent checksums, max(time),
    schema hash, versions; see M(agbotkit.dr.db_manifest)) is read in the very same snapshot. The manifest
    therefore describes exactly the data in the dump, even while the bot keeps writing.
  - Writes O(dest)/O(backup_id)/dump/ (the pg_dump directory) and O(dest)/O(backup_id)/manifest.json, which adds
    the backup id, format and the sha256 and size of every artifact to the database manifest.
  - Idempotent for a given O(backup_id) - if the manifest exists and every artifact still has its recorded sha256,
    nothing is done. A partial earlier attempt (no manifest) is removed and redone.
  - C(pg_dump) runs through community.general's CmdRunner; the password reaches it through C(PGPASSWORD) only.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.postgres
options:
  backup_id:
    description: Identifier of this backup, used as its folder name (for example a UTC timestamp V(20261125T120000Z)).
    type: str
    required: true
  dest:
    description:
      - Folder that holds backups; the backup is written to O(dest)/O(backup_id).
      - Created with mode C(0700) when missing.
    type: path
    required: true
  jobs:
    description: Parallel pg_dump workers (and manifest connections).
    type: int
    default: 2
  compress:
    description: pg_dump compression level (0-9); 1 is fast and still shrinks the trading tables well.
    type: int
    default: 1
  checksums:
    description: Record row checksums in the manifest (V(false) records counts and max(time) only).
    type: bool
    default: true
  checksum_algorithm:
    description:
      - V(typed) (C(sum64-typedhash-v2)) sums one C(hash_record_extended) per row over the columns' own hash
        functions, hashed once more so that values swapped between rows are seen, with a text fallback for types
        whose hash is not a function of the value (enums, json, domains); about 5 times cheaper than V(md5). The
        manifest keeps a canary hash, so a server that hashes differently (another CPU byte order) is reported as
        not comparable rather than as changed data.
      - V(md5) (C(sum64-md5-rowtext-v1)) hashes each row's text output; portable to any server, 5 times the CPU.
      - V(hash) (C(sum64-hashrecord-v1)) is kept for compatibility; see M(agbotkit.dr.db_manifest).
    type: str
    default: typed
    choices: [typed, md5, hash]
  pg_bin:
    description: Folder holding C(pg_dump) of the server's major version; PATH is searched after it.
    type: path
attributes:
  check_mode:
    support: full
    description: Connects, reports whether a dump would be taken and where; writes nothing.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.db_manifest
  - module: agbotkit.dr.db_load
  - name: pg_dump
    description: pg_dump reference, C(--snapshot) and the directory format.
    link: https://www.postgresql.org/docs/15/app-pgdump.html
"""

EXAMPLES = r"""
- name: Take a backup of ag_botkit
  agbotkit.dr.db_dump:
    login_host: timescaledb.ag-botkit.svc
    login_user: agbot
    login_password: "{{ dr_db_password }}"
    login_db: ag_botkit
    backup_id: "{{ now(utc=true).strftime('%Y%m%dT%H%M%SZ') }}"
    dest: /var/backups/ag-botkit
    jobs: 4
  register: backup
"""

RETURN = r"""
backup_id:
  description: The backup's identifier.
  returned: always
  type: str
path:
  description: Folder of the backup (holds C(dump/) and C(manifest.json)).
  returned: always
  type: str
manifest_path:
  description: Path of the manifest.
  returned: always
  type: str
manifest:
  description: The manifest (database manifest plus C(backup) and C(artifacts)).
  returned: success and not check mode
  type: dict
artifacts:
  description: Relative path of every file of the backup with its sha256 and size.
  returned: success and not check mode
  type: dict
  sample: {"dump/toc.dat": {"sha256": "9f2c...", "bytes": 20233}}
bytes:
  description: Total size of the dump in bytes.
  returned: success and not check mode
  type: int
duration:
  description: Seconds spent dumping and reading the manifest.
  returned: success and not check mode
  type: float
timings:
  description: Seconds of each part, as also kept in the manifest - C(pg_dump) and C(manifest) (which run at the
    same time from the same start) and C(sha256) of the artifacts after them.
  returned: success and not check mode
  type: dict
  sample: {"pg_dump": 3.9, "manifest": 2.1, "sha256": 0.1}
queries:
  description: SQL the module ran.
  returned: always
  type: list
  elements: str
"""

import json
import os
import shutil
import threading
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agbotkit.dr.plugins.module_utils._backup import private_folder
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError
from ansible_collections.agbotkit.dr.plugins.module_utils._manifest import CHECKSUM_ALGORITHMS, ManifestCollector
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import PgConnector, postgres_argument_spec
from ansible_collections.agbotkit.dr.plugins.module_utils._pgtools import (
    ToolError,
    artifact_checksums,
    conn_args,
    find_tool,
    pg_dump_runner,
    dbname_conninfo,
    pg_env,
    verify_artifacts,
)

MANIFEST_NAME = "manifest.json"


def existing_backup(path: str) -> dict | None:
    mpath = os.path.join(path, MANIFEST_NAME)
    if not os.path.isfile(mpath):
        return None
    with open(mpath) as fh:
        manifest = json.load(fh)
    if verify_artifacts(path, manifest.get("artifacts", {})):
        return None
    return manifest


def take_dump(module, connector: PgConnector, path: str) -> dict:
    p = module.params
    pg_dump = find_tool(module, "pg_dump", p["pg_bin"])
    dump_dir = os.path.join(path, "dump")
    holder = connector.session()  # connect before anything is written: a database that does not answer fails here
    try:
        try:
            if os.path.exists(path):
                shutil.rmtree(path)  # a partial earlier attempt of this backup id (no valid manifest)
            private_folder(p["dest"], False)  # the backup folder: 0700, this user's, not a symbolic link
            os.makedirs(path, mode=0o700)
        except OSError as exc:
            raise AgbotDrError("Cannot write backup %s under %s: %s. Point dest (db_backup_dir) at a folder this "
                               "user can write, with room for the dump" % (p["backup_id"], p["dest"], exc)) from exc
        started = time.monotonic()
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = holder.one("SELECT pg_catalog.pg_export_snapshot() AS id")["id"]
        result: dict = {}

        def dump():
            runner = pg_dump_runner(module, pg_dump)
            # environ_update belongs to the context: CmdRunner's run() only takes argument values
            with runner("host port user no_password format jobs compress snapshot file dbname",
                        environ_update=pg_env(p)) as ctx:
                rc, out, err = ctx.run(format="directory", jobs=p["jobs"], compress=p["compress"], snapshot=snapshot,
                                       file=dump_dir, dbname=dbname_conninfo(p["login_db"]), no_password=True,
                                       **conn_args(p))
            result.update(rc=rc, out=out, err=err, seconds=round(time.monotonic() - started, 3))

        thread = threading.Thread(target=dump)
        thread.start()
        try:
            manifest = ManifestCollector(connector, checksums=p["checksums"], parallel=max(1, p["jobs"]),
                                         algorithm=CHECKSUM_ALGORITHMS[p["checksum_algorithm"]]).collect(snapshot=snapshot)
            manifest_seconds = round(time.monotonic() - started, 3)
        finally:
            thread.join()
        holder.execute("COMMIT")
    finally:
        holder.close()
    if result.get("rc") != 0:
        raise ToolError("Failed to dump database %s: pg_dump exited %s: %s"
                        % (p["login_db"], result.get("rc"), (result.get("err") or "").strip()[-2000:]))
    mark = time.monotonic()
    artifacts = artifact_checksums(path)
    manifest["backup"] = {
        "id": p["backup_id"],
        "format": "directory",
        "compress": p["compress"],
        "snapshot_export": snapshot,
        "tool": os.path.basename(pg_dump),
    }
    manifest["artifacts"] = artifacts
    manifest["duration"] = round(time.monotonic() - started, 3)
    # pg_dump and the manifest run at the same time, both from the start
    manifest["timings"] = {"pg_dump": result["seconds"], "manifest": manifest_seconds,
                           "sha256": round(time.monotonic() - mark, 3)}
    tmp = os.path.join(path, MANIFEST_NAME + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, os.path.join(path, MANIFEST_NAME))
    return manifest


def run(module, out: dict) -> None:
    p = module.params
    path = out["path"]
    if "/" in p["backup_id"] or p["backup_id"] in ("", ".", ".."):
        raise AgbotDrError("backup_id %r is not a plain folder name" % p["backup_id"])
    if not 0 <= p["compress"] <= 9:
        raise AgbotDrError("compress must be 0-9, got %d" % p["compress"])
    connector = PgConnector(p, application_name="agbotkit.dr.db_dump")
    out["queries"] = connector.recorder.queries
    manifest = existing_backup(path)
    if manifest is None:
        if module.check_mode:
            connector.session().close()  # prove we can connect
            out["changed"] = True
        else:
            manifest = take_dump(module, connector, path)
            out["changed"] = True
    if manifest is not None:
        out.update(manifest=manifest, artifacts=manifest["artifacts"],
                   bytes=sum(a["bytes"] for a in manifest["artifacts"].values()),
                   duration=manifest.get("duration"), timings=manifest.get("timings"))


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        backup_id=dict(type="str", required=True),
        dest=dict(type="path", required=True),
        jobs=dict(type="int", default=2),
        compress=dict(type="int", default=1),
        checksums=dict(type="bool", default=True),
        checksum_algorithm=dict(type="str", default="typed", choices=["typed", "md5", "hash"]),
        pg_bin=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    path = os.path.join(p["dest"], p["backup_id"])
    run_module(module, run, result=dict(changed=False, backup_id=p["backup_id"], path=path,
                                        manifest_path=os.path.join(path, MANIFEST_NAME), queries=[]))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_manifest
short_description: Capture what a PostgreSQL backup must later prove (row counts, checksums, schema, versions)
version_added: 0.1.0
description:
  - Reads a database inside one C(REPEATABLE READ READ ONLY) transaction and returns its manifest. Per table the
    row count, an order-independent row checksum and C(max()) of its time column. For the database a hash of the
    schema (tables, columns, types, constraints, indexes), the PostgreSQL and extension versions, the hypertables
    where TimescaleDB is installed, and the time and snapshot the manifest describes.
  - With O(parallel) greater than 1 several tables are read at once on more connections that share the first
    one's snapshot (C(pg_export_snapshot()) and C(SET TRANSACTION SNAPSHOT)), so the manifest stays one consistent
    instant.
  - "The row checksum is the C(sum) over all rows of one 64-bit hash per row, summed exactly; O(checksum_algorithm)
    says which hash. It does not depend on row order and is computed in the same single scan as C(count(*)) and
    C(max(time))."
  - "The time column of a table is the first timestamp column named C(time), C(ts), C(timestamp), C(event_time),
    C(created_at), C(filled_at), C(executed_at), C(inserted_at), C(recorded_at) or C(updated_at); else the
    alphabetically first timestamp column ending in C(_at), C(_time) or C(_ts); else its only timestamp column;
    the manifest records which one it used."
  - Optionally writes the manifest as JSON to O(dest). Never changes the database.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.postgres
options:
  tables:
    description:
      - Tables to include, as V(schema.table) or a bare name in V(public).
      - Default is every user table (partitions are counted through their parent; TimescaleDB internals and
        tables owned by extensions are left out).
    type: list
    elements: str
  checksums:
    description:
      - Compute row checksums. V(false) records counts and C(max(time)) only, which is faster on large tables.
    type: bool
    default: true
  checksum_algorithm:
    description:
      - V(typed) (recorded as C(sum64-typedhash-v2)) sums C(hash_record_extended(ROW(col, ...), 0)) per row. A
        column goes in as its value where its type hashes by value (integers, floats, numeric, boolean, text types,
        date and time types, interval, uuid, bytea, jsonb, inet, cidr, macaddr, and arrays of these); any other
        column (enums, whose hash is their OID and changes on restore, json, domains, composites, geometric types)
        goes in as its text output. Text is hashed under C(COLLATE "C"). Each row's hash is hashed again
        (C(hashfloat8extended(h::float8, 0))) before the sum, because C(hash_record_extended) combines columns
        linearly and a plain sum would not see two rows swap a column's values. About 5 times cheaper than V(md5),
        since no row is turned into text.
      - Values that compare equal hash equal (numeric C(1.5) and C(1.50), interval C(1 day) and C(24 hours), float
        C(-0) and C(0)), so such a change is not seen; V(md5) sees it.
      - These are the hash functions that hash partitioning uses, which pg_upgrade keeps working, but PostgreSQL
        does not document them as stable and they depend on the CPU's byte order. So the manifest also records
        C(checksum_canary), the hash of one fixed row of every type above; M(agbotkit.dr.db_integrity) recomputes
        it and, if it differs, reports that the checksums cannot be compared instead of calling every table
        changed.
      - V(md5) (C(sum64-md5-rowtext-v1)) hashes each row's text output; portable across server versions and CPU
        architectures, at about 5 times the CPU.
      - V(hash) (C(sum64-hashrecord-v1)) sums C(hash_record_extended(row, 0)) over the whole row. Kept so older
        manifests can be verified; it fails on types without a hash function (C(json), C(point), C(xml)), and a
        restore changes the hash of enum columns, and its plain sum misses values swapped between rows.
      - M(agbotkit.dr.db_integrity) uses the algorithm the manifest names.
    type: str
    default: typed
    choices: [typed, md5, hash]
  parallel:
    description:
      - How many connections read tables at the same time, all in the same snapshot.
    type: int
    default: 2
  dest:
    description:
      - Write the manifest here as JSON.
      - The file is rewritten (RV(ignore:changed=true)) only when anything but C(created_at) and C(snapshot) differs
        from what it holds, so a second run on unchanged data changes nothing; the file then keeps the earlier
        snapshot time, which described the same data.
    type: path
  mode:
    description:
      - Permissions of O(dest) when it is written.
    type: raw
    default: '0644'
attributes:
  check_mode:
    support: full
    description: Reads the database and reports whether O(dest) would change; writes nothing.
  diff_mode:
    support: full
    description: Shows the change to O(dest).
seealso:
  - module: agbotkit.dr.db_integrity
  - module: community.postgresql.postgresql_info
  - name: pg_export_snapshot
    description: Snapshot synchronization functions.
    link: https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
"""

EXAMPLES = r"""
- name: Record the manifest beside the dump
  agbotkit.dr.db_manifest:
    login_host: 127.0.0.1
    login_user: agbot
    login_password: "{{ db_password }}"
    login_db: ag_botkit
    parallel: 4
    dest: "{{ backup_dir }}/manifest.json"
  register: manifest

- name: Counts only, for two tables, connection from PG* environment variables
  agbotkit.dr.db_manifest:
    tables: [orders, public.fills]
    checksums: false
"""

RETURN = r"""
manifest:
  description: The manifest (also what O(dest) holds when it was written).
  returned: always
  type: dict
  contains:
    schema_version:
      description: Version of the manifest format.
      type: int
      sample: 1
    created_at:
      description: The snapshot's time, C(now()) of the reading transaction, ISO 8601 in UTC.
      type: str
      sample: "2025-01-01T00:00:00.123456+00:00"
    snapshot:
      description: C(pg_current_snapshot()) of the reading transaction.
      type: str
      sample: "7412:7412:"
    database:
      description: Name of the database read.
      type: str
      sample: ag_botkit
    server_version:
      description: PostgreSQL version.
      type: str
      sample: "15.10"
    server_version_num:
      description: PostgreSQL version number.
      type: int
      sample: 150010
    extensions:
      description: Installed extensions and their versions.
      type: dict
      sample: {"plpgsql": "1.0", "timescaledb": "2.14.2"}
    hypertables:
      description: TimescaleDB hypertables and their chunk counts; only where timescaledb is installed.
      type: dict
      sample: {"public.metrics": {"num_chunks": 1}}
    checksum_algorithm:
      description: Algorithm of the row checksums, V(null) with O(checksums=false).
      type: str
      sample: sum64-typedhash-v2
    checksum_canary:
      description:
        - With C(sum64-typedhash-v2), the server's hash of a fixed test row (see O(checksum_algorithm)); else V(null).
      type: str
      sample: "-4425196434171224553"
    schema_hash:
      description: sha256 over the canonical schema of the tables.
      type: str
      sample: "sha256:c151c03f..."
    tables:
      description: Per table (V(schema.table)) its rows, checksum, max_time and time_column.
      type: dict
      sample: {"public.orders": {"rows": 1000, "checksum": "-1559067330155502908", "max_time": "2025-01-01 00:00:00+00",
               "time_column": "created_at"}}
dest:
  description: Where the manifest was (or in check mode would be) written.
  returned: when dest is set
  type: str
  sample: /backups/20250101T000000Z/manifest.json
elapsed_seconds:
  description: Time spent reading the database.
  returned: always
  type: float
  sample: 1.42
total_rows:
  description: Sum of the row counts.
  returned: always
  type: int
  sample: 5000000
queries:
  description: The SQL the module ran, in order.
  returned: always
  type: list
  elements: str
  sample: ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"]
"""

import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, ManifestError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._manifest import (  # noqa: E402
    CHECKSUM_ALGORITHMS,
    ManifestCollector,
    manifest_to_text,
    parse_manifest,
    stable_part,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (  # noqa: E402
    PgConnector,
    QueryRecorder,
    postgres_argument_spec,
)


def argument_spec() -> dict:
    spec = postgres_argument_spec()
    spec.update(
        tables=dict(type="list", elements="str"),
        checksums=dict(type="bool", default=True),
        checksum_algorithm=dict(type="str", default="typed", choices=["typed", "md5", "hash"]),
        parallel=dict(type="int", default=2),
        dest=dict(type="path"),
        mode=dict(type="raw", default="0644"),
    )
    return spec


def read_existing(path: str) -> tuple[str | None, dict | None]:
    if not os.path.exists(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return text, parse_manifest(text, path)
    except ValueError:
        return text, None


def write_file(module: AnsibleModule, path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ManifestError("Failed to write manifest %s: directory %s does not exist" % (path, directory))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".manifest-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        module.atomic_move(tmp, path)
    except OSError as exc:
        raise ManifestError("Failed to write manifest %s: %s" % (path, exc)) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(module: AnsibleModule, result: dict) -> None:
    p = module.params
    if p["parallel"] < 1:
        raise AgbotDrError("parallel must be 1 or more")
    recorder = QueryRecorder()
    result["queries"] = recorder.queries
    connector = PgConnector(p, recorder, "agbotkit.dr.db_manifest")
    started = time.monotonic()
    try:
        manifest = ManifestCollector(connector, checksums=p["checksums"], parallel=p["parallel"],
                                     algorithm=CHECKSUM_ALGORITHMS[p["checksum_algorithm"]]).collect(p["tables"])
    except ValueError as exc:
        raise ManifestError("Failed to read manifest of %s: %s" % (connector.target, exc)) from exc
    result.update(manifest=manifest, elapsed_seconds=round(time.monotonic() - started, 3),
                  total_rows=sum(t["rows"] for t in manifest["tables"].values()))
    if not p["dest"]:
        return
    dest = p["dest"]
    result["dest"] = dest
    old_text, old = read_existing(dest)
    new_text = manifest_to_text(manifest)
    if old is not None and stable_part(old) == stable_part(manifest):
        return
    result["changed"] = True
    if module._diff:
        result["diff"] = {"before": old_text or "", "after": new_text, "before_header": dest, "after_header": dest}
    if module.check_mode:
        return
    write_file(module, dest, new_text)
    file_args = module.load_file_common_arguments({"path": dest, "mode": p["mode"]})
    module.set_fs_attributes_if_different(file_args, False)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

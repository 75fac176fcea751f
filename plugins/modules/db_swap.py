#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_swap
short_description: Swap a verified restored database in for the live one by rename, keeping the old one
version_added: 0.1.0
description:
  - Renames O(live_db) to O(quarantine_db) and O(restored_db) to O(live_db) in one transaction, after refusing new
    connections to both and ending the sessions connected to them. Nothing is dropped - the damaged database is
    kept under its quarantine name until someone drops it.
  - O(restored_db) must carry the marker of a complete restore of O(backup_id) (see M(agbotkit.dr.db_load)), and
    O(verification) must be the passing result of M(agbotkit.dr.db_integrity) on O(restored_db) against the manifest
    of O(backup_id), recorded by the same run. Without it nothing is renamed, whatever tags the play ran with.
  - Connections are refused to both databases while sessions are ended; the renames, the connections allowed
    again and the quarantine marker commit in one transaction. A swap killed before that commit leaves
    connections refused - the next run of this module (and the assess step of the db_restore role) lets them in
    again on the live database and on every database carrying an agbotkit.dr marker (RV(reopened)).
  - Idempotent - when O(restored_db) no longer exists, O(live_db) carries the marker of O(backup_id) and
    O(quarantine_db) exists, nothing changes.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.postgres
options:
  live_db:
    description: Name of the live database.
    type: str
    required: true
  restored_db:
    description: Name of the verified restored database.
    type: str
    required: true
  quarantine_db:
    description: New name of the old live database.
    type: str
    required: true
  backup_id:
    description: Backup the restored database was loaded from (checked against its marker).
    type: str
    required: true
  verification:
    description:
      - The registered result of M(agbotkit.dr.db_integrity) run on O(restored_db) against the manifest of
        O(backup_id) in this run. The swap is refused unless it passed (RV(agbotkit.dr.db_integrity#module:ok)),
        names O(restored_db) and O(backup_id), and compared at least one table.
    type: dict
    required: true
    version_added: 0.2.0
  attempts:
    description: How many times to end sessions and retry when a client reconnects between the two steps.
    type: int
    default: 5
  login_db:
    description: Maintenance database to connect to (neither of the two renamed).
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    description: Checks the markers and reports the renames it would make; changes nothing.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.db_load
  - module: agbotkit.dr.db_integrity
"""

EXAMPLES = r"""
- name: Swap the verified restore in
  agbotkit.dr.db_swap:
    login_host: 127.0.0.1
    login_user: agbot
    login_password: "{{ dr_db_password }}"
    live_db: ag_botkit
    restored_db: ag_botkit_restore_20261125T130500Z
    quarantine_db: ag_botkit_corrupt_20261125T130500Z
    backup_id: 20261125T120000Z
    verification: "{{ integrity }}"   # registered from agbotkit.dr.db_integrity on the restored database
"""

RETURN = r"""
live_db:
  description: The live database's name (now holding the restored data).
  returned: always
  type: str
quarantine_db:
  description: Name the damaged database is kept under.
  returned: always
  type: str
terminated_sessions:
  description: Sessions ended to make the rename possible.
  returned: always
  type: int
reopened:
  description: Databases that refused connections (a swap killed midway) and accept them again.
  returned: always
  type: list
  elements: str
queries:
  description: SQL the module ran.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, DatabaseQueryError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (
    PgConnector,
    postgres_argument_spec,
    quote_ident,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._restore import (
    db_state,
    is_complete_restore,
    marker,
    reopen_databases,
    verification_problem,
)

TERMINATE_SQL = ("SELECT count(pg_catalog.pg_terminate_backend(pid)) AS n FROM pg_catalog.pg_stat_activity "
                 "WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid()")


def run(module, out: dict) -> None:
    p = module.params
    live, restored, quarantine = p["live_db"], p["restored_db"], p["quarantine_db"]
    if len({live, restored, quarantine, p["login_db"]}) != 4:
        raise AgbotDrError("live_db, restored_db, quarantine_db and login_db must be four different names")
    connector = PgConnector(p, application_name="agbotkit.dr.db_swap")
    out["queries"] = connector.recorder.queries
    s = connector.session()
    try:
        s.execute("SET synchronous_commit TO on")  # the renames and markers must survive a crash
        if not module.check_mode:
            out["reopened"] = reopen_databases(s, [live, restored, quarantine], quote_ident)
            out["changed"] = bool(out["reopened"])
        live_state = db_state(s, live)
        q_state = db_state(s, quarantine)
        r_state = db_state(s, restored)
        if (r_state is None and q_state and live_state
                and is_complete_restore(live_state["marker"], p["backup_id"])):
            return
        if r_state is None:
            raise AgbotDrError("Restored database %s does not exist; run the restore step first" % restored)
        if not is_complete_restore(r_state["marker"], p["backup_id"]):
            raise AgbotDrError("Database %s is not a complete restore of backup %s (marker: %s); the live "
                               "database was left untouched" % (restored, p["backup_id"], r_state["comment"]))
        problem = verification_problem(p["verification"], restored, p["backup_id"])
        if problem:
            raise AgbotDrError("Refusing to swap %s in for %s: %s. The live database was left untouched; run "
                               "the whole restore (its verify step records the result the swap needs)"
                               % (restored, live, problem))
        if live_state is None:
            raise AgbotDrError("Live database %s does not exist; nothing to swap out. Rename %s to %s by hand "
                               "once you have checked why" % (live, restored, live))
        if q_state is not None:
            raise AgbotDrError("Quarantine name %s is taken; choose another quarantine_db" % quarantine)
        out["changed"] = True
        if module.check_mode:
            return
        ql, qr, qq = quote_ident(live), quote_ident(restored), quote_ident(quarantine)
        s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % ql)
        s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % qr)
        done = False
        try:
            for attempt in range(1, p["attempts"] + 1):
                out["terminated_sessions"] += s.one(TERMINATE_SQL, ([live, restored],))["n"]
                try:
                    # one transaction: renamed, open again and marked together, or not at all
                    s.execute("BEGIN")
                    s.execute("ALTER DATABASE %s RENAME TO %s" % (ql, qq))
                    s.execute("ALTER DATABASE %s RENAME TO %s" % (qr, ql))
                    s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % ql)
                    s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % qq)
                    s.execute("COMMENT ON DATABASE %s IS %%s" % qq,
                              (marker("quarantine", p["backup_id"], "kept", "replaced_at=%s" %
                                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),))
                    s.execute("COMMIT")
                    done = True
                    break
                except DatabaseQueryError:
                    s.execute("ROLLBACK")
                    if attempt == p["attempts"]:
                        raise
                    time.sleep(0.2 * attempt)
        finally:
            if not done:  # an error (not a kill): both accept connections again under their old names
                reopen_databases(s, [live, restored], quote_ident)
    finally:
        s.close()


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        live_db=dict(type="str", required=True),
        restored_db=dict(type="str", required=True),
        quarantine_db=dict(type="str", required=True),
        backup_id=dict(type="str", required=True),
        verification=dict(type="dict", required=True),
        attempts=dict(type="int", default=5),
        login_db=dict(type="str", default="postgres"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    run_module(module, run, result=dict(changed=False, live_db=p["live_db"], quarantine_db=p["quarantine_db"],
                                        terminated_sessions=0, reopened=[], queries=[]))


if __name__ == "__main__":
    main()

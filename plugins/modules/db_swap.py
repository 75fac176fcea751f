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
  - O(restored_db) must carry the marker of a complete restore of O(backup_id) (see M(agbotkit.dr.db_load)); verify
    it with M(agbotkit.dr.db_integrity) before the swap.
  - Idempotent - when O(live_db) already carries the marker of O(backup_id) and O(quarantine_db) exists, nothing
    changes.
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
queries:
  description: SQL the module ran.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, DatabaseQueryError
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (
    PgConnector,
    finish,
    postgres_argument_spec,
    quote_ident,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._restore import db_state, marker

TERMINATE_SQL = ("SELECT count(pg_catalog.pg_terminate_backend(pid)) AS n FROM pg_catalog.pg_stat_activity "
                 "WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid()")


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        live_db=dict(type="str", required=True),
        restored_db=dict(type="str", required=True),
        quarantine_db=dict(type="str", required=True),
        backup_id=dict(type="str", required=True),
        attempts=dict(type="int", default=5),
        login_db=dict(type="str", default="postgres"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    live, restored, quarantine = p["live_db"], p["restored_db"], p["quarantine_db"]
    out = dict(changed=False, live_db=live, quarantine_db=quarantine, terminated_sessions=0, queries=[])
    connector = None
    try:
        if len({live, restored, quarantine, p["login_db"]}) != 4:
            raise AgbotDrError("live_db, restored_db, quarantine_db and login_db must be four different names")
        connector = PgConnector(p, application_name="agbotkit.dr.db_swap")
        s = connector.session()
        try:
            live_state = db_state(s, live)
            q_state = db_state(s, quarantine)
            mark = live_state and live_state["marker"]
            if mark and mark["backup"] == p["backup_id"] and mark["status"] == "complete" and q_state:
                finish(module, out, connector)
            r_state = db_state(s, restored)
            if r_state is None:
                raise AgbotDrError("Restored database %s does not exist; run the restore step first" % restored)
            rmark = r_state["marker"]
            if not rmark or rmark["backup"] != p["backup_id"] or rmark["status"] != "complete":
                raise AgbotDrError("Database %s is not a complete restore of backup %s (marker: %s); the live "
                                   "database was left untouched" % (restored, p["backup_id"], r_state["comment"]))
            if live_state is None:
                raise AgbotDrError("Live database %s does not exist; nothing to swap out. Rename %s to %s by hand "
                                   "once you have checked why" % (live, restored, live))
            if q_state is not None:
                raise AgbotDrError("Quarantine name %s is taken; choose another quarantine_db" % quarantine)
            out["changed"] = True
            if module.check_mode:
                finish(module, out, connector)
            s.execute("SET synchronous_commit TO on")  # the renames and markers must survive a crash
            ql, qr, qq = quote_ident(live), quote_ident(restored), quote_ident(quarantine)
            s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % ql)
            s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % qr)
            try:
                for attempt in range(1, p["attempts"] + 1):
                    out["terminated_sessions"] += s.one(TERMINATE_SQL, ([live, restored],))["n"]
                    try:
                        s.execute("BEGIN")
                        s.execute("ALTER DATABASE %s RENAME TO %s" % (ql, qq))
                        s.execute("ALTER DATABASE %s RENAME TO %s" % (qr, ql))
                        s.execute("COMMIT")
                        break
                    except DatabaseQueryError:
                        s.execute("ROLLBACK")
                        if attempt == p["attempts"]:
                            raise
                        time.sleep(0.2 * attempt)
            finally:
                # whatever happened, both databases accept connections again under their current names
                for name in (live, quarantine, restored):
                    if db_state(s, name) is not None:
                        s.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % quote_ident(name))
            s.execute("COMMENT ON DATABASE %s IS %%s" % qq,
                      (marker("quarantine", p["backup_id"], "kept", "replaced_at=%s" %
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),))
        finally:
            s.close()
    except AgbotDrError as err:
        finish(module, out, connector, err)
    finish(module, out, connector)


if __name__ == "__main__":
    main()

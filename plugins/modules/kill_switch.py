#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kill_switch
short_description: Halt or resume trading through the bot's kill switch, and prove it
version_added: 0.1.0
description:
  - Triggers (O(state=triggered)) or resets (O(state=reset)) the trading bot's kill switch through its HTTP API
    (C(POST /api/kill-switch/trigger), C(POST /api/kill-switch/reset), bearer token).
  - After a trigger it confirms the halt. The API must read C(halted), its C(orders_written) counter must not grow,
    and, when O(confirm_db) is given, no new rows may land in O(confirm_tables) over O(settle_seconds).
    If writes continue the module fails and says how to stop the bot at the source.
  - Idempotent. An already halted bot is not triggered again (RV(ignore:changed=false)) but the halt is still confirmed.
  - After a reset it can confirm that writes resume (O(confirm_resume)).
  - Transient failures (connection errors, timeouts, HTTP 5xx) are retried with backoff; a rejected token is not.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - agbotkit.dr.kill_switch
options:
  state:
    description:
      - V(triggered) halts trading; V(reset) resumes it.
    type: str
    required: true
    choices: [triggered, reset]
  reason:
    description:
      - Why trading is halted; sent with the trigger and shown by the bot's status.
    type: str
    default: triggered by agbotkit.dr
  wait_seconds:
    description:
      - After the POST, how long to poll C(GET /api/kill-switch) for the new state before failing.
    type: float
    default: 10
  settle_seconds:
    description:
      - How long to watch for writes after the halt (or for new writes after a reset).
    type: float
    default: 2
  confirm_db:
    description:
      - Connection options of the bot's database. When given (even as V({}), which takes everything from the
        E(PGHOST)/E(PGPORT)/E(PGUSER)/E(PGPASSWORD)/E(PGDATABASE) environment), row counts of O(confirm_tables)
        prove the halt.
    type: dict
    suboptions:
      login_host:
        description: Database host; E(PGHOST) if not set.
        type: str
      login_port:
        description: Database port; E(PGPORT) if not set.
        type: int
        default: 5432
      login_user:
        description: Role to connect as; E(PGUSER) if not set.
        type: str
      login_password:
        description: Password of O(confirm_db.login_user); E(PGPASSWORD) if not set. Never returned.
        type: str
      login_db:
        description: Database name; E(PGDATABASE) if not set.
        type: str
      connect_timeout:
        description: Seconds to wait for a connection.
        type: int
        default: 10
      ssl_mode:
        description: libpq SSL mode; E(PGSSLMODE) if not set.
        type: str
        default: prefer
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      ssl_rootcert:
        description: CA bundle that signs the server's certificate (for V(verify-ca) and V(verify-full));
          E(PGSSLROOTCERT) if not set.
        type: path
      statement_timeout:
        description: Seconds any one statement may run; V(0) for no limit.
        type: int
        default: 21600
      lock_timeout:
        description: Seconds any statement waits for a lock before it fails; V(0) for no limit.
        type: int
        default: 60
  confirm_tables:
    description:
      - Tables the bot writes to (V(schema.table), or a bare name in V(public)), counted when O(confirm_db) is given.
    type: list
    elements: str
    default: [orders, fills]
  confirm_resume:
    description:
      - With O(state=reset) and O(confirm_db), wait up to O(settle_seconds) for new rows in O(confirm_tables)
        and fail if none land.
    type: bool
    default: false
  fail_on_unconfirmed:
    description:
      - Fail when the halt (or, with O(confirm_resume), the resume) cannot be confirmed.
      - Set to V(false) only where a playbook decides itself, explicitly, to carry on; the result still says
        RV(halt_confirmed=false).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads the state and reports whether it would change; sends no POST. An already halted bot is
      still confirmed (read-only).
  diff_mode:
    support: none
    description: The module returns no diff.
notes:
  - The token is sent only in the C(Authorization) header and never appears in results or messages.
seealso:
  - module: agbotkit.dr.kill_switch_info
  - module: agbotkit.dr.db_integrity
"""

EXAMPLES = r"""
- name: Stop all trading and prove no order is written any more
  agbotkit.dr.kill_switch:
    url: http://127.0.0.1:59091
    token: "{{ kill_switch_token }}"
    state: triggered
    reason: "database corruption: incident {{ incident_id }}"
    confirm_db:
      login_host: 127.0.0.1
      login_user: agbot
      login_password: "{{ db_password }}"
      login_db: ag_botkit
    confirm_tables: [orders, fills]
    settle_seconds: 3
  register: halt

- name: Resume trading and check that orders flow again
  agbotkit.dr.kill_switch:
    url: http://127.0.0.1:59091
    token: "{{ kill_switch_token }}"
    state: reset
    confirm_db: {}   # PGHOST, PGUSER, ... from the environment
    confirm_resume: true
"""

RETURN = r"""
state:
  description: The kill-switch state after the module ran (in check mode, the state it would have).
  returned: always
  type: str
  sample: halted
previous_state:
  description: The state before the module ran.
  returned: always
  type: str
  sample: trading
kill_switch:
  description: The bot's last status answer.
  returned: always
  type: dict
  sample: {"state": "halted", "since": "2025-01-01T00:00:00Z", "reason": "incident 42", "orders_written": 1234}
halt_confirmed:
  description:
    - With O(state=triggered), whether the halt was confirmed (API halted, no new rows, counter still).
    - V(null) in check mode when the bot is still trading (nothing to confirm yet).
  returned: when state is triggered
  type: bool
  sample: true
confirmed_by:
  description: What the confirmation rests on.
  returned: when state is triggered
  type: list
  elements: str
  sample: [api, orders_written, database]
resume_confirmed:
  description: With O(confirm_resume), whether new rows landed within O(settle_seconds).
  returned: when state is reset and confirm_resume is true
  type: bool
  sample: true
rows_during_settle:
  description: Per table, rows written during the settle period (V(null) without O(confirm_db)).
  returned: when a confirmation ran
  type: dict
  sample: {"public.orders": 0, "public.fills": 0}
orders_written_during_settle:
  description: Growth of the bot's own C(orders_written) counter during the settle period.
  returned: when a halt confirmation ran and the bot reports the counter
  type: int
  sample: 0
queries:
  description: SQL run against O(confirm_db).
  returned: always
  type: list
  elements: str
  sample: ['SELECT (SELECT count(*) FROM "public"."orders") AS "public.orders"']
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._killswitch import (  # noqa: E402
    HALTED,
    TRADING,
    KillSwitchClient,
    confirm_halt,
    confirm_resume,
    kill_switch_argument_spec,
    public_status,
    raise_unconfirmed,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._manifest import (  # noqa: E402
    normalize_table_name,
    qualified,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pg import (  # noqa: E402
    PgConnector,
    QueryRecorder,
    postgres_argument_spec,
    quote_ident,
)


def argument_spec() -> dict:
    spec = kill_switch_argument_spec()
    spec.update(
        state=dict(type="str", required=True, choices=["triggered", "reset"]),
        reason=dict(type="str", default="triggered by agbotkit.dr"),
        wait_seconds=dict(type="float", default=10),
        settle_seconds=dict(type="float", default=2),
        confirm_db=dict(type="dict", options=postgres_argument_spec()),
        confirm_tables=dict(type="list", elements="str", default=["orders", "fills"]),
        confirm_resume=dict(type="bool", default=False),
        fail_on_unconfirmed=dict(type="bool", default=True),
    )
    return spec


class RowCounter:
    """One session to the bot's database; counts every table in one statement (one snapshot)."""

    def __init__(self, params: dict, tables: list[str], recorder: QueryRecorder):
        self.tables = [normalize_table_name(t) for t in tables]
        self.session = PgConnector(params, recorder, "agbotkit.dr.kill_switch").session()
        # identifiers quoted with quote_ident(): no injection through table names
        self.sql = "SELECT " + ", ".join(  # noqa: S608
            "(SELECT count(*) FROM %s) AS %s" % (qualified(t), quote_ident(t))  # noqa: S608
            for t in self.tables)

    def __call__(self) -> dict:
        row = self.session.one(self.sql)
        return {t: int(row[t]) for t in self.tables}

    def close(self):
        self.session.close()


def run(module: AnsibleModule, result: dict) -> dict:
    p = module.params
    client = KillSwitchClient(p["url"], p["token"], timeout=p["timeout"], retries=p["retries"],
                              validate_certs=p["validate_certs"])
    recorder = QueryRecorder()
    counter = None
    result.update(changed=False, queries=recorder.queries)
    try:
        if p["confirm_db"] is not None:
            counter = RowCounter(p["confirm_db"], p["confirm_tables"], recorder)
        before = client.status()
        result["previous_state"] = before["state"]
        if p["state"] == "triggered":
            result.update(_trigger(module, client, before, counter))
        else:
            result.update(_reset(module, client, before, counter))
    finally:
        if counter:
            counter.close()
    return result


def _trigger(module, client, before, counter) -> dict:
    p = module.params
    out = {"changed": before["state"] != HALTED}
    if out["changed"] and module.check_mode:
        out.update(state=HALTED, kill_switch=public_status(before), halt_confirmed=None, confirmed_by=[])
        return out
    status = before
    if out["changed"]:
        client.trigger(p["reason"])
        status = client.wait_for_state(HALTED, p["wait_seconds"])
        if status["state"] != HALTED:
            raise_unconfirmed({"message": "the bot accepted the trigger but still reads %r after %ss: %s" % (
                status["state"], p["wait_seconds"], "check its logs; stop it at the source if it keeps trading"),
                "rows_during_settle": None})
    conf = confirm_halt(counter, p["settle_seconds"], status_before=status, status_after=client.status)
    confirmed_by = ["api"]
    if conf["orders_written_during_settle"] is not None:
        confirmed_by.append("orders_written")
    if counter is not None:
        confirmed_by.append("database")
    final = client.status()
    out.update(state=final["state"], kill_switch=public_status(final), halt_confirmed=conf["halt_confirmed"],
               confirmed_by=confirmed_by, rows_during_settle=conf["rows_during_settle"],
               orders_written_during_settle=conf["orders_written_during_settle"])
    if not conf["halt_confirmed"]:
        if p["fail_on_unconfirmed"]:
            raise_unconfirmed(conf)
        module.warn("halt NOT confirmed (fail_on_unconfirmed=false): " + conf["message"])
    return out


def _reset(module, client, before, counter) -> dict:
    p = module.params
    out = {"changed": before["state"] != TRADING}
    if module.check_mode:
        out.update(state=TRADING, kill_switch=public_status(before))
        return out
    status = before
    if out["changed"]:
        client.reset()
        status = client.wait_for_state(TRADING, p["wait_seconds"])
        if status["state"] != TRADING:
            raise_unconfirmed({"message": "the bot accepted the reset but still reads %r after %ss: check its logs"
                               % (status["state"], p["wait_seconds"]), "rows_during_settle": None}, halt=False)
    out.update(state=status["state"], kill_switch=public_status(status))
    if p["confirm_resume"]:
        if counter is None:
            raise AgbotDrError("confirm_resume needs confirm_db (the bot's database connection options)")
        conf = confirm_resume(counter, p["settle_seconds"])
        out.update(resume_confirmed=conf["resume_confirmed"], rows_during_settle=conf["rows_during_settle"])
        if not conf["resume_confirmed"]:
            if p["fail_on_unconfirmed"]:
                raise_unconfirmed(conf, halt=False)
            module.warn("resume NOT confirmed (fail_on_unconfirmed=false): " + conf["message"])
    return out


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run, result={})


if __name__ == "__main__":
    main()

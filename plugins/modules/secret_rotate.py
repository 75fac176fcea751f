#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret_rotate
short_description: Rotate a Secrets Manager secret and the database password it holds, resumably
version_added: 0.2.0
description:
  - With O(state=rotated), gives the secret O(secret_id) a new random value in a way that never leaves its
    clients with neither password, and that a re-run resumes after a failure at any point.
  - "The order: the new value becomes a new version labelled C(AWSPENDING); the source is changed
    (O(source=postgres): C(ALTER ROLE <role> PASSWORD ...)); the pending version becomes C(AWSCURRENT) (Secrets
    Manager labels the old one C(AWSPREVIOUS), which is kept)."
  - Which of these steps a run still has to do is decided from the state, never from a marker - which versions
    exist and which value logs in (module_utils/_rotation.py, unit-tested). The new version's id is derived from
    O(incident_id), so a second run for the same incident changes nothing.
  - "With O(state=verified), checks the result: the C(AWSCURRENT) value logs in, the C(AWSPREVIOUS) value is
    refused, they differ, a read that names no stage (what clients and the C(amazon.aws.secretsmanager_secret)
    lookup do) answers the C(AWSCURRENT) value, and every value in O(expected_values) (for example read from
    Kubernetes Secrets) is the current one. Fails with the list of checks that failed."
  - The secret values never appear in the result except RV(value), which the calling task must hide with
    C(no_log=true).
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
options:
  secret_id:
    description: Name or ARN of the Secrets Manager secret.
    type: str
    required: true
  json_key:
    description:
      - When the secret is a JSON object, the key holding the value to rotate (the other keys are kept).
      - Empty means the whole C(SecretString) is the value.
    type: str
    default: ""
  incident_id:
    description: The incident this rotation belongs to; the new version's id is derived from it.
    type: str
    required: true
  state:
    description: V(rotated) rotates (or resumes, or finds it done); V(verified) only checks.
    type: str
    choices: [rotated, verified]
    default: rotated
  source:
    description:
      - Where the value is used as a credential. V(postgres) changes the password of O(db_role) with C(ALTER ROLE)
        and tests logins; V(none) only rotates the stored value (a token only our own workloads read).
    type: str
    choices: [postgres, none]
    default: postgres
  length:
    description: Length of the new value (letters and digits).
    type: int
    default: 32
  db_host:
    description: Database host (O(source=postgres)).
    type: str
  db_port:
    description: Database port.
    type: int
    default: 5432
  db_name:
    description: Database to connect to for login tests.
    type: str
    default: postgres
  db_role:
    description: The role whose password the secret holds.
    type: str
  db_admin_user:
    description:
      - A role allowed to change O(db_role)'s password. Empty means O(db_role) changes its own password, logged in
        with the value that currently works.
    type: str
    default: ""
  db_admin_password:
    description: Password of O(db_admin_user).
    type: str
    default: ""
  db_connect_timeout:
    description: Seconds to wait for a database connection.
    type: int
    default: 5
  expected_values:
    description: With O(state=verified) only. Values found where the secret is used; each must be the current value.
    type: list
    elements: str
    default: []
  scan_values:
    description:
      - With O(state=verified) only. Every value found where an old value could hide (for example every key of every
        Kubernetes Secret of the namespace); none may be the previous value.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reads the versions, tests the logins and reports the phase it would run; changes nothing.
  diff_mode:
    support: none
    description: No diff (the values are secret).
notes:
  - Needs C(boto3) and C(psycopg) 3 on the host that runs it.
seealso:
  - module: amazon.aws.secretsmanager_secret
  - name: Rotation in Secrets Manager
    description: The AWSPENDING / AWSCURRENT / AWSPREVIOUS staging labels.
    link: https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_how.html
"""

EXAMPLES = r"""
- name: Rotate the bot's database password
  agbotkit.dr.secret_rotate:
    secret_id: ag-botkit/production/database
    json_key: password
    incident_id: INC-20250101-000000-abcd
    source: postgres
    db_host: db.internal
    db_role: agbot
  register: rotated
  no_log: true

- name: Check that the old value is gone
  agbotkit.dr.secret_rotate:
    secret_id: ag-botkit/production/database
    json_key: password
    incident_id: INC-20250101-000000-abcd
    state: verified
    db_host: db.internal
    db_role: agbot
    expected_values: "{{ values_read_from_kubernetes }}"
  no_log: true
"""

RETURN = r"""
phase:
  description: The phase the state called for before this run acted (V(start), V(alter), V(promote), V(done)).
  returned: state=rotated
  type: str
  sample: start
steps:
  description: The steps this run did (or would do in check mode), in order.
  returned: state=rotated
  type: list
  elements: str
  sample: [pending, alter, promote]
version_id:
  description: The version labelled AWSCURRENT at the end (in check mode, the one that would be).
  returned: always
  type: str
previous_version_id:
  description: The version labelled AWSPREVIOUS at the end.
  returned: always
  type: str
value:
  description: The current value at the end (not in check mode). Secret - register it under C(no_log).
  returned: state=rotated, not in check mode
  type: str
queries:
  description: The SQL run, with the password replaced by C(********).
  returned: always
  type: list
  elements: str
checks:
  description: With O(state=verified), each check with its outcome (no values).
  returned: state=verified
  type: list
  elements: dict
  sample: [{"name": "previous value refused", "ok": true}]
"""

import secrets
import string

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.agbotkit.dr.plugins.module_utils._rotation import (
    RotationError,
    decide,
    parse_value,
    render_value,
    steps,
    version_token,
)

from ansible_collections.agbotkit.dr.plugins.module_utils._aws import (
    AWS_ERRORS,
    aws_client,
    aws_module,
    is_boto3_error_code,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, AwsApiError, MissingLibraryError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module

try:
    import psycopg
    from psycopg import sql

    HAS_PSYCOPG = True
except ImportError:  # pragma: no cover
    HAS_PSYCOPG = False

ALPHABET = string.ascii_letters + string.digits


class Rotator:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.sm = aws_client(module, "secretsmanager")
        self.queries = []

    # ---------------------------------------------------------------------------------------- Secrets Manager
    def versions(self):
        """{stage: version id} and the secret's ARN."""
        try:
            desc = self.sm.describe_secret(SecretId=self.p["secret_id"], aws_retry=True)
        except is_boto3_error_code("ResourceNotFoundException") as e:
            raise AgbotDrError(f"Failed to find secret {self.p['secret_id']}: create it first "
                               "(docs/security_breach.md, what must exist in AWS)") from e
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            raise AwsApiError(f"Failed to describe secret {self.p['secret_id']}", e) from e
        stages = {}
        for vid, labels in (desc.get("VersionIdsToStages") or {}).items():
            for label in labels:
                stages[label] = vid
        return stages

    def read(self, version_id):
        try:
            got = self.sm.get_secret_value(SecretId=self.p["secret_id"], VersionId=version_id, aws_retry=True)
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to read a version of secret {self.p['secret_id']}", e) from e
        return got.get("SecretString")

    def read_default(self):
        """The value a client reads when it names neither version nor stage (AWSCURRENT on AWS)."""
        try:
            got = self.sm.get_secret_value(SecretId=self.p["secret_id"], aws_retry=True)
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to read secret {self.p['secret_id']}", e) from e
        return got.get("SecretString")

    def put_pending(self, token, secret_string):
        try:
            self.sm.put_secret_value(SecretId=self.p["secret_id"], ClientRequestToken=token,
                                     SecretString=secret_string, VersionStages=["AWSPENDING"], aws_retry=True)
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to store the pending version of secret {self.p['secret_id']}", e) from e

    def promote(self, pending_id, current_id):
        try:
            kwargs = dict(SecretId=self.p["secret_id"], VersionStage="AWSCURRENT", MoveToVersionId=pending_id)
            if current_id and current_id != pending_id:
                kwargs["RemoveFromVersionId"] = current_id
            self.sm.update_secret_version_stage(aws_retry=True, **kwargs)
            self.sm.update_secret_version_stage(SecretId=self.p["secret_id"], VersionStage="AWSPENDING",
                                                RemoveFromVersionId=pending_id, aws_retry=True)
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to promote the new version of secret {self.p['secret_id']}", e) from e

    # ---------------------------------------------------------------------------------------- PostgreSQL
    def _connect(self, user, password):
        return psycopg.connect(host=self.p["db_host"], port=self.p["db_port"], dbname=self.p["db_name"], user=user,
                               password=password, connect_timeout=self.p["db_connect_timeout"],
                               application_name="agbotkit.dr secret_rotate", autocommit=True)

    def logs_in(self, password):
        """True if db_role logs in with password, False if refused; fails on any other error (unreachable)."""
        if password is None:
            return False
        try:
            self._connect(self.p["db_role"], password).close()
            return True
        except psycopg.OperationalError as e:
            text = to_native(e)
            if "password authentication failed" in text or "no password supplied" in text:
                return False
            raise AgbotDrError(f"Failed to reach database {self.p['db_host']}:{self.p['db_port']} to test "
                               f"role {self.p['db_role']}: {text.splitlines()[0] if text else e}; "
                               "nothing was changed by this step") from e

    def alter(self, new_value, working_value):
        if self.p["db_admin_user"]:
            user, password = self.p["db_admin_user"], self.p["db_admin_password"]
        else:
            user, password = self.p["db_role"], working_value
        stmt = sql.SQL("ALTER ROLE {} WITH PASSWORD {}")
        self.queries.append(f"ALTER ROLE {self.p['db_role']} WITH PASSWORD '********'")
        try:
            with self._connect(user, password) as conn:
                conn.execute(stmt.format(sql.Identifier(self.p["db_role"]), sql.Literal(new_value)))
        except psycopg.Error as e:
            text = to_native(e).splitlines()[0] if to_native(e) else type(e).__name__
            raise AgbotDrError(f"Failed to change the password of role {self.p['db_role']}: {text}. "
                               "The new value is kept as AWSPENDING; run again to resume",
                               queries=self.queries) from e

    # ---------------------------------------------------------------------------------------- states
    def rotated(self):
        p = self.p
        token = version_token(p["incident_id"], p["secret_id"])
        has_source = p["source"] == "postgres"
        stages = self.versions()
        current_id, pending_id = stages.get("AWSCURRENT"), stages.get("AWSPENDING")
        if pending_id == current_id:
            pending_id = None
        current_string = self.read(current_id) if current_id else None
        current = parse_value(current_string, p["json_key"])
        pending = parse_value(self.read(pending_id), p["json_key"]) if pending_id else None
        # a RotationError here is reported by run() as "Cannot rotate secret <id>: ..."
        phase = decide(current_is_ours=current_id == token,
                       current_logs_in=self.logs_in(current) if has_source else True,
                       pending_exists=pending_id is not None,
                       pending_logs_in=self.logs_in(pending) if (has_source and pending_id) else False,
                       has_source=has_source)
        todo = steps(phase)
        out = dict(changed=bool(todo), phase=phase, steps=todo, queries=self.queries,
                   version_id=current_id, previous_version_id=stages.get("AWSPREVIOUS"))
        if self.module.check_mode:
            if todo:
                out.update(version_id=pending_id or token, previous_version_id=current_id)
            return out
        if "pending" in todo:
            pending = "".join(secrets.choice(ALPHABET) for _char in range(p["length"]))
            self.put_pending(token, render_value(current_string, p["json_key"], pending))
            pending_id = token
        if "alter" in todo and has_source:
            self.alter(pending, current)
        if "promote" in todo:
            self.promote(pending_id, current_id)
            if has_source and not self.logs_in(pending):
                raise AgbotDrError(f"The new value of {p['secret_id']} is AWSCURRENT but role "
                                   f"{p['db_role']} does not log in with it; run again to resume")
        final = self.versions()
        out.update(version_id=final.get("AWSCURRENT"), previous_version_id=final.get("AWSPREVIOUS"),
                   value=pending if todo else current)
        return out

    def verified(self):
        p = self.p
        has_source = p["source"] == "postgres"
        stages = self.versions()
        current = parse_value(self.read(stages["AWSCURRENT"]), p["json_key"]) if stages.get("AWSCURRENT") else None
        previous = parse_value(self.read(stages["AWSPREVIOUS"]), p["json_key"]) if stages.get("AWSPREVIOUS") else None
        checks = [
            {"name": "AWSCURRENT is this incident's version",
             "ok": stages.get("AWSCURRENT") == version_token(p["incident_id"], p["secret_id"])},
            {"name": "AWSPREVIOUS kept", "ok": previous is not None},
            {"name": "AWSCURRENT differs from AWSPREVIOUS", "ok": previous is not None and previous != current},
            {"name": "no AWSPENDING left", "ok": "AWSPENDING" not in stages
             or stages["AWSPENDING"] == stages.get("AWSCURRENT")},
        ]
        # what a client that names no stage reads (the SDKs' and amazon.aws lookup's default): must be the same
        default = parse_value(self.read_default(), p["json_key"])
        checks.append({"name": "a read naming no stage answers AWSCURRENT", "ok": default == current})
        if has_source:
            checks.append({"name": "current value logs in", "ok": self.logs_in(current)})
            checks.append({"name": "previous value refused", "ok": previous is not None and not self.logs_in(previous)})
        stale = [v for v in p["expected_values"] if v != current]
        old = [v for v in p["expected_values"] + p["scan_values"] if previous is not None and v == previous]
        checks.append({"name": f"every value in use is the current one ({len(p['expected_values'])} checked)",
                       "ok": not stale})
        checks.append({"name": f"previous value in none of the {len(p['expected_values']) + len(p['scan_values'])} "
                               "values scanned", "ok": not old})
        out = dict(changed=False, checks=checks, queries=self.queries, version_id=stages.get("AWSCURRENT"),
                   previous_version_id=stages.get("AWSPREVIOUS"))
        failed = [c["name"] for c in checks if not c["ok"]]
        if failed:
            raise AgbotDrError(f"Rotation of {p['secret_id']} not verified: failed checks: "
                               f"{'; '.join(failed)}", **out)
        return out


def run(module, _result):
    if module.params["source"] == "postgres" and not HAS_PSYCOPG:
        raise MissingLibraryError("psycopg 3 is required on the host that runs agbotkit.dr.secret_rotate")
    if module.params["length"] < 16:
        raise AgbotDrError("length must be at least 16")
    rotator = Rotator(module)
    try:
        return rotator.rotated() if module.params["state"] == "rotated" else rotator.verified()
    except RotationError as e:
        raise RotationError(f"Cannot rotate secret {module.params['secret_id']}: {e}",
                            queries=rotator.queries) from e


def main():
    argument_spec = dict(
        secret_id=dict(type="str", required=True),
        json_key=dict(type="str", default="", no_log=False),
        incident_id=dict(type="str", required=True),
        state=dict(type="str", default="rotated", choices=["rotated", "verified"]),
        source=dict(type="str", default="postgres", choices=["postgres", "none"]),
        length=dict(type="int", default=32, no_log=False),
        db_host=dict(type="str"),
        db_port=dict(type="int", default=5432),
        db_name=dict(type="str", default="postgres"),
        db_role=dict(type="str"),
        db_admin_user=dict(type="str", default=""),
        db_admin_password=dict(type="str", default="", no_log=True),
        db_connect_timeout=dict(type="int", default=5),
        expected_values=dict(type="list", elements="str", default=[], no_log=True),
        scan_values=dict(type="list", elements="str", default=[], no_log=True),
    )
    module = aws_module(argument_spec, required_if=[("source", "postgres", ["db_host", "db_role"])])
    run_module(module, run)


if __name__ == "__main__":
    main()

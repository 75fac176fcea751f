#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: approval
short_description: Two-person rule for destructive steps - request, grant (signed by the approver) and check approvals
version_added: 0.1.0
description:
  - A destructive step (database switch, DNS change, ...) runs only with an approval given by someone other than
    the operator. The same gate serves the CLI and AWX/AAP.
  - O(state=check) with O(backend=record) (the CLI) finds the operator's AWS principal (STS GetCallerIdentity),
    derives the request id from (O(action), O(target), O(incident_id), operator), and reads the grant record
    C(<prefix>/grants/<id>.json) from O(bucket). The grant must name this very action, target, incident and
    operator, be unexpired, come from a principal registered in O(approvers) that is not the operator, and carry
    a signature that verifies (KMS Verify) with the B(registered) key of that approver. Without a grant it writes
    the request record C(<prefix>/requests/<id>.json) and fails with the command the second person runs.
  - O(state=grant) is what C(playbooks/approve.yml) runs under the approver's own credentials. It refuses when the
    caller is not a registered approver or is the operator of the request, then signs the grant with the
    approver's KMS key (KMS Sign) and writes it.
  - O(state=check) with O(backend=awx) reads the controller's API instead; the workflow job's approval node
    O(awx_approval_node) must have been approved by a user other than the one who launched the workflow.
  - What it protects against, and what it does not, is in C(docs/awx.md) ("Two-person rule").
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  state:
    description: V(request) writes the request only; V(grant) signs and writes an approval; V(check) verifies one.
    type: str
    required: true
    choices: [request, grant, check]
  backend:
    description: V(record) for S3 records signed with KMS (the CLI); V(awx) for the controller's approval nodes.
    type: str
    default: record
    choices: [record, awx]
  action:
    description: The gated step, e.g. V(db_swap) or V(dns_change). Required for O(state=request) and O(state=check).
    type: str
  target:
    description: What the step changes, e.g. the database or the DNS record. Required with O(action).
    type: str
  incident_id:
    description: The incident the step belongs to (may be empty outside an incident).
    type: str
    default: ""
  request_id:
    description: The request to approve (O(state=grant)); printed by the failed check.
    type: str
  reason:
    description: Why the approver approves (O(state=grant)); kept in the signed record.
    type: str
    default: ""
  ttl_minutes:
    description: How long a grant stays valid (1 to 1440).
    type: int
    default: 60
  approvers:
    description: The approvers' registry (inventory C(dr_approvers)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The person.
        type: str
        required: true
      principal_arn:
        description: Their own AWS principal (IAM user or role; sessions of the role match).
        type: str
        required: true
      kms_key_id:
        description: Their asymmetric KMS signing key (ECC_NIST_P256); its key policy lets only them sign.
        type: str
        required: true
  bucket:
    description: Bucket of the records (O(backend=record)).
    type: str
  prefix:
    description: Key prefix of the records.
    type: str
    default: approvals
  region:
    description: AWS region of the bucket, KMS keys and STS.
    type: str
  endpoint_url:
    description: AWS endpoint (the lab's); empty for AWS itself.
    type: str
  access_key:
    description: AWS access key; the usual AWS chain when not set.
    type: str
  secret_key:
    description: AWS secret key.
    type: str
  awx_host:
    description: Controller URL (O(backend=awx)); E(CONTROLLER_HOST) when not set.
    type: str
  awx_token:
    description: Controller OAuth token (O(backend=awx)); E(CONTROLLER_OAUTH_TOKEN) when not set.
    type: str
  awx_validate_certs:
    description: Verify the controller's TLS certificate.
    type: bool
    default: true
  awx_workflow_job_id:
    description: The workflow job this job runs in (AWX passes C(awx_workflow_job_id)).
    type: int
  awx_approval_node:
    description: Identifier of the approval node that gates this step.
    type: str
attributes:
  check_mode:
    support: full
    description: A check reads and verifies in check mode as well; V(request) and V(grant) write nothing in check mode.
  diff_mode:
    support: none
    description: The module returns no diff.
requirements: [boto3]
seealso:
  - name: docs/awx.md
    description: The two-person rule in the CLI and in AWX.
    link: https://github.com/ag-botkit/agbotkit.dr/blob/main/docs/awx.md
"""

EXAMPLES = r"""
- name: Only with an approval by a second person
  agbotkit.dr.approval:
    state: check
    action: db_swap
    target: ag_botkit
    incident_id: INC-20270101-120000-abcd
    approvers: "{{ dr_approvers }}"
    bucket: ag-botkit-approvals
    region: us-east-1

- name: Approve a request (run by the approver, with their own credentials)
  agbotkit.dr.approval:
    state: grant
    request_id: 3f2a9c0d1e2b3c4d5e6f
    reason: restore verified, checked the report
    approvers: "{{ dr_approvers }}"
    bucket: ag-botkit-approvals
    region: us-east-1
"""

RETURN = r"""
request_id:
  description: Id of the request (the same for a re-run of the same step by the same operator).
  returned: backend=record
  type: str
approved:
  description: Whether a valid approval was found (O(state=check)).
  returned: state=check
  type: bool
approver:
  description: Who approved.
  returned: when approved or granted
  type: str
operator:
  description: The operator's principal (record) or user name (awx).
  returned: always
  type: str
expires_at:
  description: When the grant expires (UTC).
  returned: backend=record, when approved or granted
  type: str
"""

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402

from ansible_collections.agbotkit.dr.plugins.module_utils._approval import (  # noqa: E402
    SIGNING_ALGORITHM,
    ApprovalError,
    approver_by_arn,
    canonical,
    check_grant,
    decide_awx,
    grant_payload,
    request_id,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import MissingLibraryError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:  # pragma: no cover
    HAS_BOTO3 = False
    BotoCoreError = ClientError = OSError


class Aws:
    def __init__(self, p: dict):
        kw = {"region_name": p["region"]}
        if p.get("endpoint_url"):
            kw["endpoint_url"] = p["endpoint_url"]
        if p.get("access_key"):
            kw["aws_access_key_id"] = p["access_key"]
            kw["aws_secret_access_key"] = p["secret_key"]
        self.s3 = boto3.client("s3", **kw)
        self.kms = boto3.client("kms", **kw)
        self.sts = boto3.client("sts", **kw)
        self.bucket = p["bucket"]
        self.prefix = p["prefix"].rstrip("/")

    def caller(self) -> str:
        return self.sts.get_caller_identity()["Arn"]

    def get(self, key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApprovalError(f"record {self.prefix}/{key} is not JSON: {exc}") from exc

    def put(self, key: str, data: dict) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{self.prefix}/{key}",
            Body=json.dumps(data, indent=1).encode(),
            ContentType="application/json",
        )


def _request_record(p: dict, operator: str) -> dict:
    return {
        "request_id": request_id(p["action"], p["target"], p["incident_id"], operator),
        "action": p["action"],
        "target": p["target"],
        "incident_id": p["incident_id"],
        "operator_arn": operator,
    }


def run_record(module: AnsibleModule) -> dict:
    p = module.params
    aws = Aws(p)
    now = datetime.now(timezone.utc)
    caller = aws.caller()
    if p["state"] == "grant":
        req = aws.get(f"requests/{p['request_id']}.json")
        if req is None:
            raise ApprovalError(
                f"no request {p['request_id']} in s3://{p['bucket']}/{p['prefix']}/requests/: "
                "check the id the gated step printed"
            )
        payload = grant_payload(
            req, approver_by_arn(p["approvers"], caller), caller, p["reason"], p["ttl_minutes"], now
        )
        existing = aws.get(f"grants/{req['request_id']}.json")
        result = {
            "request_id": req["request_id"],
            "operator": req["operator_arn"],
            "approver": payload["approver"],
            "expires_at": payload["expires_at"],
            "changed": True,
        }
        if module.check_mode:
            return result
        key = approver_by_arn(p["approvers"], caller)["kms_key_id"]
        sig = aws.kms.sign(
            KeyId=key, Message=canonical(payload), MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        )["Signature"]
        aws.put(
            f"grants/{req['request_id']}.json",
            {
                "payload": payload,
                "signature": base64.b64encode(sig).decode(),
                "signing_algorithm": SIGNING_ALGORITHM,
                "replaces": bool(existing),
            },
        )
        return result
    for name in ("action", "target"):
        if not p.get(name):
            raise ApprovalError(f"{name} is required with state={p['state']}")
    req = _request_record(p, caller)
    rid = req["request_id"]
    if p["state"] == "request":
        changed = aws.get(f"requests/{rid}.json") is None
        if changed and not module.check_mode:
            aws.put(f"requests/{rid}.json", dict(req, requested_at=now.strftime("%Y-%m-%dT%H:%M:%SZ")))
        return {"request_id": rid, "operator": caller, "changed": changed}
    grant = aws.get(f"grants/{rid}.json")
    if grant is None:
        if aws.get(f"requests/{rid}.json") is None and not module.check_mode:
            aws.put(f"requests/{rid}.json", dict(req, requested_at=now.strftime("%Y-%m-%dT%H:%M:%SZ")))
        raise ApprovalError(
            f"{p['action']} of {p['target']} (incident {p['incident_id'] or 'none'}) "
            "needs an approval by a second person. "
            f"Request {rid} is recorded. Ask an approver to run, with their own AWS credentials: "
            f"ansible-playbook -i <inventory> playbooks/approve.yml -e approval_request_id={rid} ; "
            "then re-run this step "
            f"as the same person (with -e incident_id={p['incident_id']} where the playbook declares an incident)"
        )
    payload, approver = check_grant(
        grant,
        action=p["action"],
        target=p["target"],
        incident_id=p["incident_id"],
        operator_arn=caller,
        approvers=p["approvers"],
        now=now,
    )
    try:
        ok = aws.kms.verify(
            KeyId=approver["kms_key_id"],
            Message=canonical(payload),
            MessageType="RAW",
            Signature=base64.b64decode(grant["signature"]),
            SigningAlgorithm=SIGNING_ALGORITHM,
        )["SignatureValid"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("KMSInvalidSignatureException", "InvalidSignatureException"):
            ok = False
        else:
            raise
    except ValueError:
        ok = False
    if not ok:
        raise ApprovalError(
            f"the signature of the approval record does not verify with {payload['approver']}'s registered key: "
            "the record was not written by the approver; ask them to run approve.yml"
        )
    return {
        "request_id": rid,
        "operator": caller,
        "approved": True,
        "approver": payload["approver"],
        "expires_at": payload["expires_at"],
        "changed": False,
    }


def _awx_get(p: dict, path: str) -> dict:
    host = (p.get("awx_host") or os.environ.get("CONTROLLER_HOST") or os.environ.get("TOWER_HOST") or "").rstrip("/")
    token = p.get("awx_token") or os.environ.get("CONTROLLER_OAUTH_TOKEN") or os.environ.get("TOWER_OAUTH_TOKEN")
    if not host or not token:
        raise ApprovalError(
            "backend=awx needs the controller's URL and a token: attach the "
            "'ag-botkit controller (approval check)' credential to the job template"
        )
    if not host.startswith("http"):
        host = "https://" + host
    resp = open_url(
        host + path, headers={"Authorization": f"Bearer {token}"}, validate_certs=p["awx_validate_certs"], timeout=30
    )
    return json.loads(resp.read())


def run_awx(module: AnsibleModule) -> dict:
    p = module.params
    if not p.get("awx_workflow_job_id") or not p.get("awx_approval_node"):
        raise ApprovalError(
            "this step needs an approval: launch it from the region_failover workflow (awx_workflow_job_id "
            "and its approval node), or run it from the CLI with an approval record"
        )
    wid = p["awx_workflow_job_id"]
    wf = _awx_get(p, f"/api/v2/workflow_jobs/{wid}/")
    nodes = _awx_get(p, f"/api/v2/workflow_jobs/{wid}/workflow_nodes/?page_size=200").get("results", [])
    node = next((n for n in nodes if n.get("identifier") == p["awx_approval_node"]), None)
    job = ((node or {}).get("summary_fields") or {}).get("job") or {}
    approval = _awx_get(p, f"/api/v2/workflow_approvals/{job['id']}/") if job.get("id") else None
    decided = decide_awx(wf, nodes, approval, p["awx_approval_node"])
    return {"approved": True, "approver": decided["approver"], "operator": decided["operator"], "changed": False}


def run(module: AnsibleModule, _result: dict) -> dict:
    if module.params["backend"] == "awx":
        if module.params["state"] != "check":
            raise ApprovalError("backend=awx only checks: approvals are given on the controller's approval node")
        return run_awx(module)
    if not HAS_BOTO3:
        raise MissingLibraryError("boto3 is required for backend=record")
    for name in ("bucket", "region"):
        if not module.params.get(name):
            raise ApprovalError(f"{name} is required with backend=record")
    try:
        return run_record(module)
    except (BotoCoreError, ClientError) as exc:
        raise ApprovalError(f"Failed to read or write the approval records: {exc}") from exc


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["request", "grant", "check"]),
            backend=dict(type="str", default="record", choices=["record", "awx"]),
            action=dict(type="str"),
            target=dict(type="str"),
            incident_id=dict(type="str", default=""),
            request_id=dict(type="str"),
            reason=dict(type="str", default=""),
            ttl_minutes=dict(type="int", default=60),
            approvers=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    principal_arn=dict(type="str", required=True),
                    kms_key_id=dict(type="str", required=True),
                ),
            ),
            bucket=dict(type="str"),
            prefix=dict(type="str", default="approvals"),
            region=dict(type="str"),
            endpoint_url=dict(type="str"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
            awx_host=dict(type="str"),
            awx_token=dict(type="str", no_log=True),
            awx_validate_certs=dict(type="bool", default=True),
            awx_workflow_job_id=dict(type="int"),
            awx_approval_node=dict(type="str"),
        ),
        required_if=[("state", "grant", ["request_id"])],
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()

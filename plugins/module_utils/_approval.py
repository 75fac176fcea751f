# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two-person rule: the pure decisions behind agbotkit.dr.approval (no I/O here; unit-tested).

A request names (action, target, incident, operator principal). Its id is a hash of those four, so a re-run of
the same gated step by the same operator finds the same request, and an approval can never be reused for
another action, target, incident or operator. A grant is the request plus who approved, when and until when,
signed with the approver's own KMS key. ``check_grant`` accepts a grant only if every one of those holds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import ApprovalError

SIGNING_ALGORITHM = "ECDSA_SHA_256"


def request_id(action: str, target: str, incident_id: str, operator_arn: str) -> str:
    """Stable id of a request: the same gated step, target, incident and operator give the same id."""
    raw = "\n".join([action, target, incident_id, operator_arn]).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def canonical(payload: dict) -> bytes:
    """The exact bytes that are signed and verified (sorted keys, no whitespace)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _fmt(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def approver_by_arn(approvers: list, arn: str) -> dict | None:
    """The registered approver whose principal is ``arn`` (an assumed-role session matches its role)."""
    for a in approvers:
        if principal_matches(a.get("principal_arn", ""), arn):
            return a
    return None


def principal_matches(registered: str, caller: str) -> bool:
    """True when the caller ARN is the registered principal: equal, or a session of the registered role."""
    if not registered or not caller:
        return False
    if registered == caller:
        return True
    # arn:aws:iam::ACCT:role/NAME  <->  arn:aws:sts::ACCT:assumed-role/NAME/SESSION
    try:
        r_acct, r_res = registered.split(":")[4], registered.split(":", 5)[5]
        c_acct, c_res = caller.split(":")[4], caller.split(":", 5)[5]
    except IndexError:
        return False
    if r_res.startswith("role/") and c_res.startswith("assumed-role/"):
        return r_acct == c_acct and c_res.split("/")[1] == r_res.split("/")[-1]
    return False


def grant_payload(
    request: dict, approver: dict, approver_arn: str, reason: str, ttl_minutes: int, now: datetime
) -> dict:
    """What the approver signs. Refuses a self-approval and an unregistered approver before anything is signed."""
    if not approver:
        raise ApprovalError(
            f"{approver_arn} is not a registered approver (dr_approvers): ask someone on the approvers list, "
            "or add this principal and its KMS signing key to dr_approvers in the inventory"
        )
    if (
        principal_matches(approver.get("principal_arn", ""), request["operator_arn"])
        or approver_arn == request["operator_arn"]
    ):
        raise ApprovalError(
            f"{approver_arn} requested this run ({request['action']} of {request['target']}, incident "
            f"{request['incident_id']}) and cannot approve it: "
            "a second person must run approve.yml with their own credentials"
        )
    if ttl_minutes <= 0 or ttl_minutes > 24 * 60:
        raise ApprovalError(f"approval_ttl_minutes must be between 1 and 1440, not {ttl_minutes}")
    return {
        "version": 1,
        "request_id": request["request_id"],
        "action": request["action"],
        "target": request["target"],
        "incident_id": request["incident_id"],
        "operator_arn": request["operator_arn"],
        "approver": approver["name"],
        "approver_arn": approver_arn,
        "reason": reason,
        "approved_at": _fmt(now),
        "expires_at": _fmt(now + timedelta(minutes=ttl_minutes)),
    }


def check_grant(
    grant: dict, *, action: str, target: str, incident_id: str, operator_arn: str, approvers: list, now: datetime
) -> tuple[dict, dict]:
    """Check a grant's contents against this run. Returns (payload, approver entry whose key must verify it).

    The signature itself is verified by the caller with the *registered* key of the approver returned here,
    never with a key named in the grant.
    """
    payload = grant.get("payload")
    if not isinstance(payload, dict) or not isinstance(grant.get("signature"), str):
        raise ApprovalError(
            "approval record is malformed (no payload or signature): ask the approver to run approve.yml again"
        )
    want = {
        "action": action,
        "target": target,
        "incident_id": incident_id,
        "operator_arn": operator_arn,
        "request_id": request_id(action, target, incident_id, operator_arn),
    }
    for key, value in want.items():
        if payload.get(key) != value:
            raise ApprovalError(
                f"approval record is for {key}={payload.get(key)!r}, this run has {value!r}: it approves another run"
            )
    approver = next((a for a in approvers if a.get("name") == payload.get("approver")), None)
    if approver is None:
        raise ApprovalError(f"approval signed by {payload.get('approver')!r}, who is not in dr_approvers")
    if not principal_matches(approver.get("principal_arn", ""), payload.get("approver_arn", "")):
        raise ApprovalError(f"approval names {payload.get('approver')} but was given by {payload.get('approver_arn')}")
    if (
        principal_matches(approver.get("principal_arn", ""), operator_arn)
        or payload.get("approver_arn") == operator_arn
    ):
        raise ApprovalError(f"{operator_arn} cannot approve their own run: a second person must run approve.yml")
    try:
        expires = _utc(payload["expires_at"])
    except (KeyError, ValueError) as exc:
        raise ApprovalError(f"approval record has no valid expiry: {exc}") from exc
    if now >= expires:
        raise ApprovalError(
            f"approval by {payload['approver']} expired at {payload['expires_at']}: ask for a new one (approve.yml)"
        )
    return payload, approver


def decide_awx(workflow_job: dict, nodes: list, approval: dict | None, node_identifier: str) -> dict:
    """The AWX side of the same rule: the workflow's approval node was approved by someone other than its launcher.

    ``workflow_job`` is GET /api/v2/workflow_jobs/N/, ``nodes`` the results of its workflow_nodes/, ``approval``
    GET /api/v2/workflow_approvals/M/ of the node named ``node_identifier`` (None when it has not run).
    """
    launcher = ((workflow_job.get("summary_fields") or {}).get("created_by") or {}).get("username")
    if not launcher:
        raise ApprovalError(
            f"workflow job {workflow_job.get('id')} has no launching user (schedules cannot pass an approval gate)"
        )
    node = next((n for n in nodes if n.get("identifier") == node_identifier), None)
    if node is None:
        raise ApprovalError(
            f"workflow job {workflow_job.get('id')} has no node {node_identifier!r}: "
            "run this step from the region_failover workflow"
        )
    if approval is None:
        raise ApprovalError(f"approval node {node_identifier!r} of workflow job {workflow_job.get('id')} has not run")
    by = ((approval.get("summary_fields") or {}).get("approved_or_denied_by") or {}).get("username")
    if approval.get("status") != "successful" or not by:
        raise ApprovalError(f"approval node {node_identifier!r} is {approval.get('status')}, not approved")
    if by == launcher:
        raise ApprovalError(
            f"{by} launched workflow job {workflow_job.get('id')} and approved it too: a second person must approve"
        )
    return {
        "approver": by,
        "operator": launcher,
        "approval_id": approval.get("id"),
        "approved_at": approval.get("finished"),
    }

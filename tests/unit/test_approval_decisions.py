"""Two-person rule: the pure decisions of agbotkit.dr.approval (the signed-record path is tested on the lab in
tests/integration/test_approval.py; here every refusal is shown on its own)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils._approval import (  # noqa: E402
    ApprovalError,
    approver_by_arn,
    check_grant,
    decide_awx,
    grant_payload,
    principal_matches,
    request_id,
)

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
OLIVIA = "arn:aws:sts::111122223333:assumed-role/dr-operator-olivia/olivia@example.com"
ALICE = "arn:aws:sts::111122223333:assumed-role/dr-approver-alice/alice@example.com"
APPROVERS = [
    {"name": "alice", "principal_arn": "arn:aws:iam::111122223333:role/dr-approver-alice", "kms_key_id": "k-alice"},
    {"name": "olivia", "principal_arn": "arn:aws:iam::111122223333:role/dr-operator-olivia", "kms_key_id": "k-olivia"},
]


def request(**kw):
    r = {"action": "db_swap", "target": "ag_botkit", "incident_id": "INC-1", "operator_arn": OLIVIA}
    r.update(kw)
    r["request_id"] = request_id(r["action"], r["target"], r["incident_id"], r["operator_arn"])
    return r


def grant(payload):
    return {"payload": payload, "signature": "c2ln"}


def check(g, **kw):
    args = dict(
        action="db_swap", target="ag_botkit", incident_id="INC-1", operator_arn=OLIVIA, approvers=APPROVERS, now=NOW
    )
    args.update(kw)
    return check_grant(g, **args)


def test_request_id_is_stable_and_binds_every_field():
    assert request_id("db_swap", "ag_botkit", "INC-1", OLIVIA) == request_id("db_swap", "ag_botkit", "INC-1", OLIVIA)
    ids = {
        request_id(*f)
        for f in [
            ("db_swap", "ag_botkit", "INC-1", OLIVIA),
            ("dns_change", "ag_botkit", "INC-1", OLIVIA),
            ("db_swap", "other", "INC-1", OLIVIA),
            ("db_swap", "ag_botkit", "INC-2", OLIVIA),
            ("db_swap", "ag_botkit", "INC-1", ALICE),
        ]
    }
    assert len(ids) == 5


def test_assumed_role_sessions_match_their_role_only():
    assert principal_matches(APPROVERS[0]["principal_arn"], ALICE)
    assert not principal_matches(APPROVERS[0]["principal_arn"], OLIVIA)
    assert not principal_matches("arn:aws:iam::999999999999:role/dr-approver-alice", ALICE)  # other account
    assert approver_by_arn(APPROVERS, ALICE)["name"] == "alice"
    assert approver_by_arn(APPROVERS, "arn:aws:iam::111122223333:user/mallory") is None


def test_a_valid_grant_passes():
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "ok", 30, NOW)
    payload, approver = check(grant(p), now=NOW + timedelta(minutes=29))
    assert approver["kms_key_id"] == "k-alice" and payload["approver"] == "alice"


def test_the_operator_cannot_grant_their_own_request():
    with pytest.raises(ApprovalError, match="cannot approve it"):
        grant_payload(request(), approver_by_arn(APPROVERS, OLIVIA), OLIVIA, "", 30, NOW)


def test_an_unregistered_principal_cannot_grant():
    with pytest.raises(ApprovalError, match="not a registered approver"):
        grant_payload(request(), None, "arn:aws:iam::111122223333:user/mallory", "", 30, NOW)


def test_a_self_approval_record_is_refused_even_if_written_by_hand():
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 30, NOW)
    p.update(approver="olivia", approver_arn=OLIVIA)
    with pytest.raises(ApprovalError, match="cannot approve their own run"):
        check(grant(p))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("action", "dns_change", "approves another run"),
        ("target", "other_db", "approves another run"),
        ("incident_id", "INC-2", "approves another run"),
        ("operator_arn", ALICE, "approves another run"),
    ],
)
def test_a_grant_for_another_run_is_refused(field, value, match):
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 30, NOW)
    with pytest.raises(ApprovalError, match=match):
        check(grant(p), **{field: value})


def test_an_expired_grant_is_refused():
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 30, NOW)
    with pytest.raises(ApprovalError, match="expired"):
        check(grant(p), now=NOW + timedelta(minutes=30))


def test_a_grant_naming_an_approver_but_given_by_someone_else_is_refused():
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 30, NOW)
    p["approver_arn"] = "arn:aws:iam::111122223333:user/mallory"
    with pytest.raises(ApprovalError, match="was given by"):
        check(grant(p))
    p = grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 30, NOW)
    p["approver"] = "bob"
    with pytest.raises(ApprovalError, match="not in dr_approvers"):
        check(grant(p))
    with pytest.raises(ApprovalError, match="malformed"):
        check({"payload": p})


def test_ttl_is_bounded():
    with pytest.raises(ApprovalError, match="between 1 and 1440"):
        grant_payload(request(), approver_by_arn(APPROVERS, ALICE), ALICE, "", 0, NOW)


# --- AWX: the approval node, read from the controller's API -------------------------------------------------

WF = {"id": 7, "summary_fields": {"created_by": {"username": "olivia"}}}
NODES = [{"identifier": "approve-dns-change", "summary_fields": {"job": {"id": 91, "type": "workflow_approval"}}}]


def approval(by, status="successful"):
    return {"id": 91, "status": status, "summary_fields": {"approved_or_denied_by": {"username": by}}}


def test_awx_approval_by_a_second_user_passes():
    assert decide_awx(WF, NODES, approval("alice"), "approve-dns-change")["approver"] == "alice"


@pytest.mark.parametrize(
    "wf,nodes,appr,match",
    [
        (WF, NODES, approval("olivia"), "approved it too"),
        (WF, NODES, approval("alice", "failed"), "not approved"),  # denied
        (WF, NODES, approval("alice", "canceled"), "not approved"),  # timed out
        (WF, NODES, None, "has not run"),
        (WF, [], approval("alice"), "has no node"),
        ({"id": 7, "summary_fields": {}}, NODES, approval("alice"), "no launching user"),  # a schedule
    ],
)
def test_awx_approval_refusals(wf, nodes, appr, match):
    with pytest.raises(ApprovalError, match=match):
        decide_awx(wf, nodes, appr, "approve-dns-change")

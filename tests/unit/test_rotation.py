"""The rotation's phase decision (plugins/module_utils/_rotation.py): never two half-states, never neither password."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("_rotation", ROOT / "plugins/module_utils/_rotation.py")
rot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rot)


@pytest.mark.parametrize(("state", "phase"), [
    # nothing begun: the old value works, nothing pending
    ({"current_is_ours": False, "current_logs_in": True, "pending_exists": False, "pending_logs_in": False}, "start"),
    # died after storing AWSPENDING, before ALTER ROLE: the old value still works
    ({"current_is_ours": False, "current_logs_in": True, "pending_exists": True, "pending_logs_in": False}, "alter"),
    # died after ALTER ROLE, before promoting: only the pending value logs in
    ({"current_is_ours": False, "current_logs_in": False, "pending_exists": True, "pending_logs_in": True}, "promote"),
    # promoted (AWSCURRENT is ours and works): the database side is done
    ({"current_is_ours": True, "current_logs_in": True, "pending_exists": False, "pending_logs_in": False}, "done"),
    # promoted but the AWSPENDING label was not removed yet, and the value is the same one
    ({"current_is_ours": True, "current_logs_in": True, "pending_exists": True, "pending_logs_in": True}, "promote"),
])
def test_decide(state, phase):
    assert rot.decide(**state) == phase


@pytest.mark.parametrize("state", [
    {"current_is_ours": False, "current_logs_in": False, "pending_exists": False, "pending_logs_in": False},
    {"current_is_ours": False, "current_logs_in": False, "pending_exists": True, "pending_logs_in": False},
    {"current_is_ours": True, "current_logs_in": False, "pending_exists": False, "pending_logs_in": False},
])
def test_decide_refuses_when_nothing_logs_in(state):
    with pytest.raises(rot.RotationError, match="ALTER ROLE"):
        rot.decide(**state)


def test_decide_without_source():
    assert rot.decide(current_is_ours=False, current_logs_in=True, pending_exists=False, pending_logs_in=False,
                      has_source=False) == "start"
    assert rot.decide(current_is_ours=False, current_logs_in=True, pending_exists=True, pending_logs_in=False,
                      has_source=False) == "promote"
    assert rot.decide(current_is_ours=True, current_logs_in=True, pending_exists=False, pending_logs_in=False,
                      has_source=False) == "done"


def test_steps_and_token():
    assert rot.steps("start") == ["pending", "alter", "promote"]
    assert rot.steps("alter") == ["alter", "promote"]
    assert rot.steps("done") == []
    a = rot.version_token("INC-1", "db")
    assert a == rot.version_token("INC-1", "db") != rot.version_token("INC-2", "db") != rot.version_token("INC-1", "x")
    assert len(a) == 36


def test_values_in_json_secrets():
    old = json.dumps({"username": "agbot", "password": "old"})
    assert rot.parse_value(old, "password") == "old"
    assert rot.parse_value("plain", "") == "plain"
    new = json.loads(rot.render_value(old, "password", "new"))
    assert new == {"username": "agbot", "password": "new"}
    assert rot.render_value("plain", "", "new") == "new"
    with pytest.raises(rot.RotationError, match="no key"):
        rot.parse_value(old, "token")
    with pytest.raises(rot.RotationError, match="not a JSON object"):
        rot.parse_value("plain", "password")

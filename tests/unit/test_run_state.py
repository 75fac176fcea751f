"""Resume state of a scenario run: plugins/plugin_utils/run_state.py and the action plugin agbotkit.dr.run_state
(plugins/action/run_state.py, on the controller; plugins/modules/run_state.py is its documentation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
_COLLECTIONS = ROOT / ".collections"
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible_collections.agbotkit.dr.plugins.action import run_state as action  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, RunStateError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.plugin_utils import run_state as rs  # noqa: E402

T0 = 1735725600.0  # 2025-01-01T10:00:00Z


class _Plugin:
    """Runs the action plugin as a task would (its argument spec, check mode, the clock at ``now``)."""

    @staticmethod
    def run(args, check_mode, now):
        task = mock.MagicMock()
        task.args, task.check_mode, task.async_val, task.diff = args, check_mode, 0, False
        plugin = action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                     shared_loader_obj=None)
        with mock.patch.object(action.ActionBase, "run", return_value={}), \
                mock.patch.object(action.time, "time", return_value=now):
            result = plugin.run(task_vars={})
        assert "failed" not in result, result
        return result


mod = _Plugin


def params(path, **kw):
    base = {"path": str(path), "state": "started", "mode": "failover", "step": None, "incident_id": None,
            "preexisting": None}
    base.update(kw)
    return base


def test_a_first_run_starts_fresh_and_is_saved_private(tmp_path):
    path = tmp_path / "work" / "rf.json"
    res = mod.run(params(path), False, T0)
    assert res["resumed"] is False and res["changed"] is False
    saved = json.loads(path.read_text())
    assert saved == res["run_state"]
    assert (saved["declared_at"], saved["status"], saved["completed"], saved["mode"]) == (
        "2025-01-01T10:00:00Z", "running", [], "failover")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("status, mode, resumed", [
    ("running", "failover", True), ("failed", "failover", True),
    ("completed", "failover", False),       # a finished run is never resumed
    ("failed", "drill", False),             # nor a run of another mode
])
def test_only_an_unfinished_run_of_the_same_mode_is_resumed(tmp_path, status, mode, resumed):
    path = tmp_path / "rf.json"
    prev = dict(rs.new_state(mode, T0), incident_id="INC-1", completed=["preflight"], status=status)
    rs.save(str(path), prev)
    res = mod.run(params(path), False, T0 + 100)
    assert res["resumed"] is resumed
    state = res["run_state"]
    if resumed:
        assert (state["incident_id"], state["completed"], state["declared_epoch"], state["status"]) == (
            "INC-1", ["preflight"], T0, "running")
    else:
        assert (state["incident_id"], state["completed"], state["declared_epoch"]) == ("", [], T0 + 100)


def test_steps_are_marked_once_in_order_with_their_times(tmp_path):
    path = tmp_path / "rf.json"
    mod.run(params(path), False, T0)
    first = mod.run(params(path, state="step_done", step="preflight"), False, T0 + 20)
    again = mod.run(params(path, state="step_done", step="preflight"), False, T0 + 30)
    mod.run(params(path, state="step_done", step="database"), False, T0 + 50)
    state = json.loads(path.read_text())
    assert first["step_marked"] is True and again["step_marked"] is False
    assert state["completed"] == ["preflight", "database"]
    assert [(p["step"], p["started"], p["seconds"]) for p in state["phases"]] == [
        ("preflight", "2025-01-01T10:00:00Z", 20.0), ("database", "2025-01-01T10:00:20Z", 30.0)]


def test_a_resumed_run_does_not_count_the_time_between_runs(tmp_path):
    path = tmp_path / "rf.json"
    mod.run(params(path), False, T0)
    mod.run(params(path, state="step_done", step="preflight"), False, T0 + 10)
    mod.run(params(path, state="failed"), False, T0 + 15)
    mod.run(params(path), False, T0 + 3600)
    mod.run(params(path, state="step_done", step="database"), False, T0 + 3625)
    assert json.loads(path.read_text())["phases"][-1]["seconds"] == 25.0


def test_incident_and_preexisting_are_recorded_once(tmp_path):
    path = tmp_path / "rf.json"
    mod.run(params(path, incident_id="INC-1"), False, T0)
    mod.run(params(path, state="step_done", step="preflight", preexisting={"rds": False}), False, T0 + 1)
    mod.run(params(path, state="failed"), False, T0 + 2)
    res = mod.run(params(path, incident_id="INC-2", state="started"), False, T0 + 3)
    res = mod.run(params(path, state="step_done", step="infra", preexisting={"rds": True}), False, T0 + 4)
    assert res["run_state"]["incident_id"] == "INC-1" and res["run_state"]["preexisting"] == {"rds": False}


@pytest.mark.parametrize("saved_incident, status, resumed", [
    ("INC-1", "failed", True), ("INC-1", "running", True),
    ("INC-1", "completed", False),          # a finished run of the incident is not resumed: a new run of it begins
    ("INC-OTHER", "failed", False),         # an unfinished run of another incident is not resumed
    ("", "failed", False),                  # nor one that never recorded its incident
])
def test_resume_incident_id_resumes_only_that_incidents_run(tmp_path, saved_incident, status, resumed):
    path = tmp_path / "sb.json"
    rs.save(str(path), dict(rs.new_state("respond", T0), incident_id=saved_incident, completed=["immediate"],
                            status=status))
    res = mod.run(params(path, mode="respond", resume_incident_id="INC-1"), False, T0 + 100)
    state = res["run_state"]
    assert res["resumed"] is resumed
    assert state["incident_id"] == "INC-1"  # a new run records the incident at once
    assert (state["completed"], state["declared_epoch"]) == ((["immediate"], T0) if resumed else ([], T0 + 100))
    assert json.loads(path.read_text()) == state


def test_without_resume_incident_id_any_unfinished_run_of_the_mode_is_resumed(tmp_path):
    path = tmp_path / "sb.json"
    rs.save(str(path), dict(rs.new_state("respond", T0), incident_id="INC-OTHER", status="failed"))
    res = mod.run(params(path, mode="respond", resume_incident_id=""), False, T0 + 1)
    assert res["resumed"] is True and res["run_state"]["incident_id"] == "INC-OTHER"


def test_status_completed_and_failed(tmp_path):
    path = tmp_path / "rf.json"
    mod.run(params(path), False, T0)
    assert mod.run(params(path, state="completed"), False, T0 + 1)["run_state"]["status"] == "completed"
    with pytest.raises(RunStateError):
        rs.finish({}, "done", T0)


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "rf.json"
    res = mod.run(params(path), True, T0)
    assert res["run_state"]["status"] == "running" and not path.exists()


def _failure(args, check_mode=False):
    """The action plugin's result for args that must fail (a failed task, not a traceback)."""
    task = mock.MagicMock()
    task.args, task.check_mode, task.async_val, task.diff = args, check_mode, 0, False
    plugin = action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                 shared_loader_obj=None)
    with mock.patch.object(action.ActionBase, "run", return_value={}):
        result = plugin.run(task_vars={})
    assert result.get("failed") is True, result
    return result


def test_marking_a_step_without_a_started_run_is_refused(tmp_path):
    with pytest.raises(AgbotDrError, match="start the run"):
        rs.run(params(tmp_path / "rf.json", state="step_done", step="dns"), False, T0)
    failed = _failure(params(tmp_path / "rf.json", state="step_done", step="dns"))
    assert failed["msg"] == ("No run is recorded in %s: start the run (state=started) before step_done"
                             % (tmp_path / "rf.json")) and failed["path"] == str(tmp_path / "rf.json")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"completed": "preflight"}'])
def test_a_file_that_is_not_a_run_state_is_an_error_not_a_fresh_start(tmp_path, content):
    path = tmp_path / "rf.json"
    path.write_text(content)
    with pytest.raises(RunStateError, match="move it away"):
        rs.run(params(path), False, T0)
    assert "move it away" in _failure(params(path))["msg"]
    assert path.read_text() == content


@pytest.mark.parametrize("args, msg", [
    ({"state": "started"}, "missing required arguments: path"),
    ({"path": "/x.json", "state": "step_done"}, "state is step_done but all of the following are missing: step"),
    ({"path": "/x.json", "state": "finished"},
     "value of state must be one of: started, step_done, completed, failed, got: finished"),
    ({"path": "/x.json", "bogus": 1}, "Unsupported parameters for (agbotkit.dr.run_state) module: bogus. Supported "
     "parameters include: incident_id, mode, path, preexisting, resume_incident_id, state, step."),
    ({"path": "/x.json", "preexisting": "rds"}, "argument 'preexisting' is of type str and we were unable to convert "
     "to dict: dictionary requested, could not parse JSON or key=value"),
])
def test_the_argument_spec_refuses_as_the_module_did(args, msg):
    """The texts AnsibleModule gave for the same mistakes (ansible-core's ArgumentSpecValidator, the same spec)."""
    assert _failure(args)["msg"] == msg


def test_a_path_with_a_tilde_is_the_controller_users_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    res = mod.run({"path": "~/state/rf.json", "mode": "drill"}, False, T0)
    assert json.loads((tmp_path / "state/rf.json").read_text()) == res["run_state"]


def test_the_module_runs_under_ansible_with_its_argument_spec(tmp_path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    path = tmp_path / "rf.json"

    def adhoc(args):
        return subprocess.run([str(ROOT / ".venv/bin/ansible"), "localhost", "-m", "agbotkit.dr.run_state", "-a", args],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)

    ok = adhoc(f"path={path} mode=drill")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(path.read_text())["mode"] == "drill"
    missing = adhoc(f"path={path} state=step_done")
    assert missing.returncode != 0 and "step" in missing.stdout
    wrong = adhoc(f"path={path} state=finished")
    assert wrong.returncode != 0 and "value of state must be one of" in wrong.stdout


def test_it_runs_on_the_controller_without_a_module_process(tmp_path):
    """Issue #14 (CI time): the runbook calls run_state 4 to 20 times a run; as a module each call was a new Python
    process (AnsiballZ, about 0.3 s of CPU). It is an action plugin, in no action group, its module file only
    documentation: Ansible transfers and runs nothing for it (-vvv would show the AnsiballZ file put and run)."""
    assert (ROOT / "plugins/action/run_state.py").is_file()
    stub = (ROOT / "plugins/modules/run_state.py").read_text()
    assert "DOCUMENTATION" in stub and "def main" not in stub and "AnsibleModule" not in stub
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    path = tmp_path / "rf.json"
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible"), "localhost", "-vvv", "-m", "agbotkit.dr.run_state",
                           "-a", f"path={path} mode=drill"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(path.read_text())["mode"] == "drill"
    assert "AnsiballZ" not in proc.stdout + proc.stderr, "run_state ran as a module process"


def test_the_documented_options_are_the_argument_spec():
    """validate-modules compared a module's DOCUMENTATION with its argument spec; for an action plugin with a
    documentation stub nothing does, so this test does: names, types, defaults, choices, required."""
    import yaml

    stub = {}
    exec((ROOT / "plugins/modules/run_state.py").read_text(), stub)  # noqa: S102 - our own documentation stub
    documented = yaml.safe_load(stub["DOCUMENTATION"])["options"]
    assert set(documented) == set(rs.ARGUMENT_SPEC)
    for name, spec in rs.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert (doc.get("type", "str"), doc.get("default"), doc.get("choices"), bool(doc.get("required"))) == (
            spec.get("type", "str"), spec.get("default"), spec.get("choices"), bool(spec.get("required"))), name
    assert "Required with O(state=step_done)" in documented["step"]["description"]
    assert rs.REQUIRED_IF == [("state", "step_done", ["step"])]

"""AWX/AAP configuration as code: the consistency rules over the real data, each rule shown failing, and the
survey generator (types, choices, required, defaults, typed confirmations, what a launch passes)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
from ansible_collections.agbotkit.dr.plugins.plugin_utils.awx import (  # noqa: E402
    AwxConfigError,
    consistency,
    playbook_inputs,
    survey_extra_vars,
    survey_question,
    survey_spec,
)
from awx_data import argspecs, config, playbooks, provided_by_inventories  # noqa: E402


@pytest.fixture(scope="module")
def data():
    cfg = config()
    return dict(
        config=cfg,
        playbooks=playbooks(),
        argspecs=argspecs(),
        declared=cfg["awx_playbook_inputs"],
        provided=provided_by_inventories(),
        lab_only=cfg["awx_playbooks_without_template"],
    )


def problems(d, **override):
    args = dict(d, **override)
    return consistency(
        args["config"], args["playbooks"], args["argspecs"], args["declared"], args["provided"], args["lab_only"]
    )


def test_the_configuration_is_consistent(data):
    assert problems(data) == []


def test_every_playbook_has_a_template_or_is_listed(data):
    pbs = dict(data["playbooks"])
    pbs["playbooks/new_runbook.yml"] = ([{"hosts": "all", "tasks": []}], "")
    assert problems(data, playbooks=pbs) == [
        "playbooks/new_runbook.yml has no job template and is not listed as lab-only/CLI-only"
    ]


def test_a_template_for_a_missing_playbook_is_reported(data):
    cfg = copy.deepcopy(data["config"])
    cfg["controller_templates"][0]["playbook"] = "playbooks/gone.yml"
    out = problems(data, config=cfg)
    assert any("playbook playbooks/gone.yml does not exist" in p for p in out)


def test_a_survey_field_the_playbook_does_not_accept_is_reported(data):
    cfg = copy.deepcopy(data["config"])
    backup = next(t for t in cfg["controller_templates"] if t["playbook"] == "playbooks/backup.yml")
    backup["survey_fields"].append({"var": "db_restore_confirm"})  # a db_restore variable, not backup.yml's
    assert problems(data, config=cfg) == [
        "DR | Backup: survey field db_restore_confirm is not a variable playbooks/backup.yml accepts"
    ]


def test_a_required_input_without_survey_field_is_reported(data):
    cfg = copy.deepcopy(data["config"])
    notify = next(t for t in cfg["controller_templates"] if t["playbook"] == "playbooks/incident_notify.yml")
    notify["survey_fields"] = [f for f in notify["survey_fields"] if f["var"] != "incident_notify_message"]
    assert problems(data, config=cfg) == [
        "template DR | Incident notify: required input incident_notify_message has no survey field"
    ]


def test_a_required_role_option_without_survey_field_is_reported(data):
    specs = copy.deepcopy(data["argspecs"])
    specs["kill_switch"]["main"]["options"]["kill_switch_reason"]["required"] = True
    cfg = copy.deepcopy(data["config"])
    ks = next(t for t in cfg["controller_templates"] if t["playbook"] == "playbooks/kill_switch.yml")
    ks["survey_fields"] = [f for f in ks["survey_fields"] if f["var"] != "kill_switch_reason"]
    assert problems(data, config=cfg, argspecs=specs) == [
        "template DR | Kill switch: required input kill_switch_reason has no survey field"
    ]


def test_a_declared_input_the_playbook_never_reads_is_reported(data):
    declared = copy.deepcopy(data["declared"])
    declared["playbooks/region_failover.yml"]["dr_not_read_anywhere"] = {"type": "str"}
    assert problems(data, declared=declared) == [
        "playbooks/region_failover.yml: declared input dr_not_read_anywhere is never read by the playbook"
    ]


def test_a_schedule_of_a_missing_template_is_reported(data):
    cfg = copy.deepcopy(data["config"])
    cfg["controller_schedules"][0]["unified_job_template"] = "DR | Nothing"
    assert problems(data, config=cfg) == ["schedule daily backup: template DR | Nothing does not exist"]


def test_a_workflow_node_of_a_missing_template_and_an_unknown_notification_are_reported(data):
    cfg = copy.deepcopy(data["config"])
    cfg["controller_workflows"][0]["workflow_nodes"][0]["unified_job_template"]["name"] = "DR | Nothing"
    cfg["controller_workflows"][0]["notification_templates_error"].append("carrier pigeon")
    out = problems(data, config=cfg)
    assert "workflow region_failover: node preflight runs unknown template DR | Nothing" in out
    assert "region_failover: notification carrier pigeon does not exist" in out


def test_the_plan_schedules_and_workflow_are_there(data):
    cfg = data["config"]
    names = {s["unified_job_template"] for s in cfg["controller_schedules"]}
    assert {"DR | Backup", "DR | Readiness", "DR | Backup verify", "DR | Region failover"} <= names
    drill = next(s for s in cfg["controller_schedules"] if "drill" in s["name"])
    assert drill["extra_data"] == {"dr_mode": "drill"} and "INTERVAL=3" in drill["rrule"]
    wf = cfg["controller_workflows"][0]
    nodes = {n["identifier"]: n for n in wf["workflow_nodes"]}
    approvals = [i for i, n in nodes.items() if n["unified_job_template"]["type"] == "workflow_approval"]
    assert approvals == ["approve-database-switch", "approve-dns-change"]
    # the approvals come before the database and DNS stages, and every stage has a failure path
    assert nodes["approve-database-switch"]["related"]["success_nodes"] == [{"identifier": "database"}]
    assert nodes["approve-dns-change"]["related"]["success_nodes"] == [{"identifier": "dns"}]
    for ident, node in nodes.items():
        if ident != "notify-failure":
            assert node["related"]["failure_nodes"] == [{"identifier": "notify-failure"}], ident
    assert {n["notification_type"] for n in cfg["controller_notifications"]} == {
        "slack",
        "pagerduty",
        "email",
        "webhook",
    }


def test_no_secret_values_in_the_configuration(data):
    for cred in data["config"]["controller_credentials"]:
        assert "inputs" not in cred, cred["name"]
    for note in data["config"]["controller_notifications"]:
        for key in ("token", "service_key", "password"):
            assert note["notification_configuration"].get(key, "") == "", (note["name"], key)


# --- survey generation ---------------------------------------------------------------------------------------


def test_questions_are_typed_from_the_argument_spec():
    q = survey_question({"var": "a"}, {"type": "bool", "default": False, "description": "C(x) on"})
    assert q["type"] == "multiplechoice" and q["choices"] == "true\nfalse" and q["default"] == "false"
    assert q["question_description"] == "x on"
    q = survey_question({"var": "b"}, {"type": "int", "default": 30})
    assert q["type"] == "integer" and q["default"] == 30
    q = survey_question({"var": "c"}, {"type": "str", "choices": ["status", "reset"], "default": "status"})
    assert q["type"] == "multiplechoice" and q["choices"] == "status\nreset"
    q = survey_question({"var": "d"}, {"type": "str", "no_log": True})
    assert q["type"] == "password" and "default" not in q
    q = survey_question({"var": "e"}, {"type": "str", "required": True})
    assert q["required"] is True and "default" not in q
    q = survey_question({"var": "f"}, {"type": "list", "elements": "str", "choices": ["a", "b"], "default": ["a"]})
    assert q["type"] == "multiselect" and q["default"] == "a"


def test_questions_that_cannot_be_asked_are_refused():
    with pytest.raises(AwxConfigError, match="list without choices"):
        survey_question({"var": "l"}, {"type": "list"})
    with pytest.raises(AwxConfigError, match="not one of its choices"):
        survey_question({"var": "c"}, {"type": "str", "choices": ["a"], "default": "b"})
    with pytest.raises(AwxConfigError, match="no survey question type"):
        survey_question({"var": "d"}, {"type": "dict"})


def test_a_confirmation_is_a_typed_text_field(data):
    plays, _ = data["playbooks"]["playbooks/db_restore.yml"]
    inputs = playbook_inputs(plays, data["argspecs"], data["declared"]["playbooks/db_restore.yml"])
    t = next(t for t in data["config"]["controller_templates"] if t["playbook"] == "playbooks/db_restore.yml")
    spec = survey_spec(t, inputs)
    q = next(q for q in spec["spec"] if q["variable"] == "db_restore_confirm")
    assert q["type"] == "text" and q["default"] == "" and "Type the live database's name" in q["question_description"]
    # the playbook fixes db_restore_mode itself: never an input
    assert "db_restore_mode" not in inputs
    # what a launch with the default answers passes: no confirmation, so no swap
    assert survey_extra_vars(spec)["db_restore_confirm"] == ""
    assert survey_extra_vars(spec, {"db_restore_confirm": "ag_botkit"})["db_restore_confirm"] == "ag_botkit"


def test_a_launch_passes_answers_and_valid_defaults_only():
    spec = {
        "spec": [
            {"variable": "a", "type": "text", "min": 0, "max": 10, "default": "x", "required": False},
            {"variable": "b", "type": "text", "min": 0, "max": 10, "required": False},  # no default: omitted
            {"variable": "c", "type": "integer", "default": 3, "required": False},
            {
                "variable": "d",
                "type": "multiplechoice",
                "choices": "true\nfalse",
                "default": "false",
                "required": False,
            },
            {"variable": "e", "type": "text", "min": 2, "max": 10, "default": "", "required": False},  # default invalid
        ]
    }
    assert survey_extra_vars(spec) == {"a": "x", "c": 3, "d": "false"}
    assert survey_extra_vars(spec, {"b": "y", "d": "true"}) == {"a": "x", "b": "y", "c": 3, "d": "true"}
    with pytest.raises(AwxConfigError, match="not valid"):
        survey_extra_vars(spec, {"d": "maybe"})
    with pytest.raises(AwxConfigError, match="does not ask"):
        survey_extra_vars(spec, {"zz": 1})
    with pytest.raises(AwxConfigError, match="required"):
        survey_extra_vars({"spec": [{"variable": "r", "type": "text", "required": True, "min": 0, "max": 5}]})


def test_the_dry_run_prints_every_object_from_the_same_data(data, tmp_path):
    """make awx-plan: playbooks/awx_configure.yml without a controller lists every object it would create."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    plan_file = tmp_path / "plan.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), INCIDENT_TIMELINE_REPORTS_DIR=str(tmp_path))
    res = subprocess.run([str(root / ".venv/bin/ansible-playbook"), "playbooks/awx_configure.yml",
                          "-e", f"awx_configure_plan_file={plan_file}"], cwd=root, env=env, capture_output=True,
                         text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    plan = json.loads(plan_file.read_text())
    cfg = data["config"]
    kinds = {"organization": "controller_organizations", "credential_type": "controller_credential_types",
             "credential": "controller_credentials", "execution_environment": "controller_execution_environments",
             "project": "controller_projects", "inventory": "controller_inventories",
             "inventory_source": "controller_inventory_sources", "notification_template": "controller_notifications",
             "job_template": "controller_templates", "workflow_job_template": "controller_workflows",
             "schedule": "controller_schedules", "setting": "controller_settings"}
    for kind, key in kinds.items():
        planned = [o["name"] for o in plan if o["_kind"] == kind]
        assert planned == [o["name"] for o in cfg[key]], kind
        for o in [o for o in plan if o["_kind"] == kind]:
            assert f"(item={kind} {o['name']})" in res.stdout
    assert "Apply |" not in res.stdout.replace("Apply to the controller", "")   # nothing applied in a dry run
    restore = next(o for o in plan if o["name"] == "DR | Database restore")
    assert restore["survey_enabled"] and "survey_fields" not in restore
    declared = next(t for t in cfg["controller_templates"] if t["name"] == "DR | Database restore")
    assert [q["variable"] for q in restore["survey_spec"]["spec"]] == [f["var"] for f in declared["survey_fields"]]

"""A result that a run records (and a gate reads) cannot be given as input.

Extra vars beat set_fact in Ansible: `-e verify_results=[...]` (or an AWX survey, or an inventory variable of that
name) would replace what the verify step records, and the DNS gate would read the forged list. roles/runbook's
declare refuses such a run before anything is declared, started or changed (runbook_recorded_results).
"""

from __future__ import annotations

import pytest

FORGED_OK = [{"what": "forged", "result": "ok", "detail": "given with -e"}]

# (scenario playbook, the result its gate or resume reads, a forged value that would pass it)
CASES = [
    ("playbooks/region_failover.yml", "verify_results", FORGED_OK),
    ("playbooks/db_restore.yml", "db_restore_verification", FORGED_OK),
    ("playbooks/cluster_recover.yml", "eks_recover_diagnosis", {"level": "rebuild", "kind": "forged", "reasons": []}),
    ("playbooks/security_breach.yml", "forensics_result", {"preserved": True, "incident_id": "INC-FORGED"}),
    ("playbooks/security_breach.yml", "runbook_state",
     {"incident_id": "INC-FORGED", "completed": ["immediate", "evidence"], "status": "running"}),
]


@pytest.mark.parametrize(("playbook", "name", "value"), CASES, ids=[f"{p.split('/')[-1]}:{n}" for p, n, _ in CASES])
def test_a_forged_result_is_refused_before_anything_is_declared(run_playbook, lab, tmp_path, playbook, name, value):
    res = run_playbook(playbook, extra_vars={name: value, "dr_work_dir": str(tmp_path),
                                             "dr_reports_dir": str(tmp_path / "reports")})
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert f"{name} is a result that this run records itself" in out, out[-3000:]
    assert "Remove it and run again. Nothing was changed." in out
    # refused in the first tasks: no run state, no incident declared, no notification, no step started
    assert not list(tmp_path.glob("*.json")), sorted(p.name for p in tmp_path.iterdir())
    assert "TASK [agbotkit.dr.runbook : Declare | Start or resume the run" not in out
    assert "Declare the incident" not in out.split("Declare | No result this run records is given as input")[1]


def test_the_same_run_without_the_forged_result_passes_the_check(run_playbook, lab, tmp_path):
    """The check refuses given results only: a check-mode run of the breach playbook with the same inputs minus the
    forged one gets past it (so the refusal above is the check's, not an error of the inputs)."""
    res = run_playbook("playbooks/security_breach.yml", "--check", "--tags", "immediate",
                       extra_vars={"dr_work_dir": str(tmp_path), "dr_reports_dir": str(tmp_path / "reports")})
    out = res.stdout + res.stderr
    assert "TASK [agbotkit.dr.runbook : Declare | No result this run records is given as input]" in out, out[-3000:]
    assert "is a result that this run records itself" not in out
    assert "TASK [agbotkit.dr.runbook : Declare | Start or resume the run" in out, out[-3000:]

"""Every module, filter and callback of the collection renders with ansible-doc (its DOCUMENTATION is valid)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if not p.stem.startswith("_"))
FILTERS = ["backup_ids", "seconds_between", "to_epoch", "step_durations", "rto_seconds", "rpo_seconds",
           "recovery_figures", "restore_point", "k8s_backup", "awx_job_templates", "activity_review"]


def doc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([str(ROOT / ".venv/bin/ansible-doc"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.mark.parametrize("name", MODULES)
def test_module_doc_renders(name):
    res = doc(f"agbotkit.dr.{name}")
    assert res.returncode == 0, res.stderr
    assert "EXAMPLES" in res.stdout and "RETURN VALUES" in res.stdout
    assert "[WARNING]" not in res.stderr, res.stderr


@pytest.mark.parametrize("name", FILTERS)
def test_filter_doc_renders(name):
    res = doc("-t", "filter", f"agbotkit.dr.{name}")
    assert res.returncode == 0 and "[ERROR]" not in res.stderr, res.stderr


def test_callback_doc_renders():
    res = doc("-t", "callback", "agbotkit.dr.incident_timeline")
    assert res.returncode == 0 and "reports_dir" in res.stdout, res.stderr


def test_every_module_is_in_the_action_group():
    runtime = (ROOT / "meta/runtime.yml").read_text()
    missing = [m for m in MODULES if f"- {m}\n" not in runtime]
    assert not missing, f"add to meta/runtime.yml action_groups.dr: {missing}"

"""Integration fixtures: the lab must be up (`make lab-up`; `make test` does it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))


@pytest.fixture(scope="session")
def lab() -> dict:
    path = LAB_DIR / "lab.json"
    if not path.exists():
        pytest.fail("the lab is not up: run `make lab-up` first (make test does it)")
    data = json.loads(path.read_text())
    data["secrets"] = json.loads(Path(data["secrets_file"]).read_text())
    return data


@pytest.fixture(scope="session")
def lab_env(lab) -> dict:
    env = dict(os.environ)
    env.update(lab["env"])
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    return env


def _written_report(out: str, prefix: str) -> dict:
    """The JSON report a playbook run says it wrote (its output names "<dir>/<prefix>-<time>.json").

    Never "the newest file in reports/": the lanes of `make test` share the checkout's reports/ folder, so the newest
    file may be another lab's run.
    """
    found = re.findall(r"([\w./-]*/" + re.escape(prefix) + r"-\d{8}T\d{6}Z\.json)", out)
    assert found, f"the run names no {prefix}-<time>.json report:\n{out[-3000:]}"
    path = Path(found[-1])
    return json.loads((path if path.is_absolute() else ROOT / path).read_text())


@pytest.fixture(scope="session")
def written_report():
    """written_report(output, "db_restore") -> the report that run wrote (see _written_report)."""
    return _written_report


def _fault_path(name: str) -> Path:
    return LAB_DIR / "faults" / name


@pytest.fixture
def fault():
    """Turn lab faults on for one test: fault("aws.throttle", {...}); all are cleared after."""
    made: list[Path] = []

    def _on(name: str, options: dict | None = None) -> None:
        p = _fault_path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(options or {}))
        made.append(p)

    yield _on
    for p in made:
        p.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def run_playbook(lab_env):
    """Run ansible-playbook from the checkout; returns CompletedProcess (never raises)."""

    def _run(playbook: str | Path, *args: str, extra_vars: dict | None = None,
             inventory: str = "inventories/lab", env: dict | None = None,
             timeout: int = 900) -> subprocess.CompletedProcess:
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", inventory, str(playbook), *args]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        e = dict(lab_env)
        if env:
            e.update(env)
        return subprocess.run(cmd, check=False, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)

    return _run

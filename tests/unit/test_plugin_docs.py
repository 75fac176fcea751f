"""Every module, filter and callback of the collection renders with ansible-doc (its DOCUMENTATION is valid),
and every filter's doc is its own: ansible-doc -t filter agbotkit.dr.NAME shows the doc named NAME."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILTER_DIR = ROOT / "plugins/filter"
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if not p.stem.startswith("_"))
# Action-only plugins (plugins/action/NAME.py): their plugins/modules/NAME.py holds documentation only.
ACTION_ONLY = sorted(p.stem for p in (ROOT / "plugins/action").glob("*.py") if not p.stem.startswith("_"))

# Filters left out of the doc checks, by name, each with why; delete an entry to check that filter again.
EXCLUDED: dict[str, str] = {}

# ansible-doc reads a filter's sidecar (plugins/filter/NAME.yml) only when the .py file that defines the filter has
# no DOCUMENTATION (ansible/utils/plugin_docs.py get_plugin_docs tries the adjacent file only when the .py has none),
# so filter files keep no DOCUMENTATION. A filter listed here (name -> its file) is strict xfail until it passes.
SHADOWED_BY_PY_DOC: dict[str, str] = {}


def _filters() -> dict[str, str]:
    """Every filter name -> the file that defines it, from each file's FilterModule().filters()."""
    sys.path.insert(0, str(ROOT / ".collections"))  # the filters import the collection's module_utils
    found = {}
    for path in sorted(FILTER_DIR.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_docs_filter_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in mod.FilterModule().filters():
            assert name not in found, f"filter {name} is defined in {found.get(name)} and {path.name}"
            found[name] = path.name
    return found


ALL_FILTERS = _filters()
FILTERS = sorted(n for n in ALL_FILTERS if n not in EXCLUDED)


def doc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run([str(ROOT / ".venv/bin/ansible-doc"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=300)


@pytest.mark.parametrize("name", MODULES)
def test_module_doc_renders(name):
    res = doc(f"agbotkit.dr.{name}")
    assert res.returncode == 0, res.stderr
    assert "EXAMPLES" in res.stdout and "RETURN VALUES" in res.stdout
    assert "[WARNING]" not in res.stderr, res.stderr


@pytest.fixture(scope="module")
def filter_docs():
    """One ansible-doc run for every filter (one run per filter costs ~2.5 s each)."""
    res = doc("-j", "-t", "filter", *(f"agbotkit.dr.{n}" for n in FILTERS))
    assert res.returncode == 0 and "[ERROR]" not in res.stderr, res.stderr
    assert "[WARNING]" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def test_the_discovery_finds_the_filters():
    # a broken discovery must not pass as "no filter lacks docs"
    assert {"backup_ids", "backup_retention", "activity_review", "cluster_diagnosis", "k8s_backup"} <= set(FILTERS)
    assert set(EXCLUDED) <= set(ALL_FILTERS), "an EXCLUDED filter no longer exists: drop it from EXCLUDED"


def test_every_filter_doc_renders_as_text():
    res = doc("-t", "filter", *(f"agbotkit.dr.{n}" for n in FILTERS))
    assert res.returncode == 0 and "[ERROR]" not in res.stderr, res.stderr
    assert "[WARNING]" not in res.stderr, res.stderr


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(
        strict=True, reason=f"{SHADOWED_BY_PY_DOC[n]}'s in-file DOCUMENTATION shadows plugins/filter/{n}.yml"))
    if n in SHADOWED_BY_PY_DOC else n
    for n in FILTERS])
def test_filter_doc_is_its_own(name, filter_docs):
    got = filter_docs.get(f"agbotkit.dr.{name}")
    assert got, f"ansible-doc returned no doc for agbotkit.dr.{name}"
    assert got["doc"]["name"] == name, (
        f"ansible-doc -t filter agbotkit.dr.{name} shows the doc of {got['doc']['name']} ({got['doc']['filename']}): "
        f"write plugins/filter/{name}.yml and keep no DOCUMENTATION in {ALL_FILTERS[name]}")
    assert f"agbotkit.dr.{name}" in (got.get("examples") or ""), "the EXAMPLES do not use the filter"
    assert "_value" in (got.get("return") or {}), "RETURN has no _value"


@pytest.mark.parametrize("name", FILTERS)
def test_filter_has_its_sidecar(name):
    """The sidecar exists, is named for its filter and has the three parts (checked apart from ansible-doc, which
    ignores a sidecar while the .py has a DOCUMENTATION)."""
    path = FILTER_DIR / f"{name}.yml"
    assert path.is_file(), f"write {path.relative_to(ROOT)} (DOCUMENTATION, EXAMPLES, RETURN)"
    data = yaml.safe_load(path.read_text())
    assert data["DOCUMENTATION"]["name"] == name
    assert {"short_description", "description", "version_added", "options"} <= set(data["DOCUMENTATION"])
    assert f"agbotkit.dr.{name}" in data["EXAMPLES"]
    assert "_value" in data["RETURN"]


def test_no_sidecar_without_its_filter():
    orphans = sorted(p.name for p in FILTER_DIR.glob("*.y*ml") if p.stem not in ALL_FILTERS)
    assert not orphans, f"sidecars of no filter (renamed or removed?): {orphans}"


def test_callback_doc_renders():
    res = doc("-t", "callback", "agbotkit.dr.incident_timeline")
    assert res.returncode == 0 and "reports_dir" in res.stdout, res.stderr


def test_every_module_is_in_the_action_group():
    """Every module is in the dr group; the action-only incident plugins are not in any group: they take no option
    another member shares and refuse unknown ones, so a module_defaults entry for a group could only break them."""
    runtime = (ROOT / "meta/runtime.yml").read_text()
    missing = [m for m in MODULES if m not in ACTION_ONLY and f"- {m}\n" not in runtime]
    assert not missing, f"add to meta/runtime.yml action_groups.dr: {missing}"
    grouped = [m for m in ACTION_ONLY if f"- {m}\n" in runtime]
    assert not grouped, f"action-only plugins in an action group: {grouped}"


@pytest.mark.parametrize("name", ACTION_ONLY)
def test_an_action_only_plugin_has_its_documentation_stub(name):
    stub = (ROOT / "plugins/modules" / f"{name}.py").read_text()
    assert "DOCUMENTATION" in stub and "def main" not in stub, f"plugins/modules/{name}.py: documentation only"
    assert name in MODULES

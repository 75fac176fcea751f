"""The action group agbotkit.dr.pg (meta/runtime.yml) and the roles' module_defaults for it.

ansible-core (2.19, executor/module_common.py _get_action_arg_defaults) hands every option of a
`module_defaults: {group/NAME: {...}}` entry to every module of the group, unfiltered, and a module rejects an option
it does not know ("Unsupported parameters for (...) module"). So:
- every member of `pg` (this collection's database modules and community.postgresql's modules, named one by one:
  community.postgresql.all also holds postgresql_pg_hba, which takes no connection options) must take each option a
  role may put in the group's defaults, with login_password no_log;
- the roles put nothing else there (login_db is not among them: community.postgresql's postgresql_db has none);
- every role task that calls a member gets its connection from a module_defaults entry for the group in its own task
  file, or names login_host, login_user and login_password itself. The lab and the tests export PGHOST, PGUSER and
  PGPASSWORD, and both module families fall back on them, so a task that lost its connection options would still pass
  every integration test, connected through the environment: only this test sees it.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

COMMUNITY_PG = ROOT / ".collections/ansible_collections/community/postgresql"
GROUP = "group/agbotkit.dr.pg"
# What a role may put in the group's module_defaults: the names every member takes (ssl_rootcert is an alias of
# community.postgresql's ca_cert).
SHARED = {"login_host", "login_port", "login_user", "login_password", "ssl_mode", "ssl_rootcert"}
# What a task under those defaults may still name: its database, and the server when it reaches another one.
TASK_MAY_SET = {"login_db", "login_host", "login_port"}


def runtime_groups(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["action_groups"]


@functools.cache
def pg_members() -> tuple[str, ...]:
    """FQCNs of the pg group."""
    out = []
    for entry in runtime_groups(ROOT / "meta/runtime.yml")["pg"]:
        assert isinstance(entry, str), "pg extends another group: check that group's members here too"
        out.append(entry if entry.count(".") == 2 else "agbotkit.dr." + entry)
    return tuple(out)


class _Captured(Exception):
    pass


def argument_spec(fqcn: str, monkeypatch) -> dict:
    """The argument spec a module's main() builds (its AnsibleModule is stopped before it reads any input)."""
    ns, coll, name = fqcn.split(".")
    mod = importlib.import_module(f"ansible_collections.{ns}.{coll}.plugins.modules.{name}")
    seen = {}

    def fake(self, *args, **kwargs):
        seen.update(kwargs.get("argument_spec") or args[0])
        raise _Captured

    # every module class (amazon.aws's AnsibleAWSModule too) ends in AnsibleModule.__init__
    monkeypatch.setattr(basic.AnsibleModule, "__init__", fake)
    with pytest.raises(_Captured):
        mod.main()
    return seen


def takes(spec: dict, option: str) -> bool:
    return option in spec or any(option in (o.get("aliases") or []) for o in spec.values())


def test_the_group_holds_this_collections_postgresql_modules_and_community_postgresql():
    members = pg_members()
    assert {"agbotkit.dr.db_integrity", "agbotkit.dr.db_load", "agbotkit.dr.db_swap",
            "community.postgresql.postgresql_query", "community.postgresql.postgresql_db"} <= set(members)


@pytest.mark.parametrize("fqcn", pg_members())
def test_every_member_takes_every_shared_option_and_hides_the_password(fqcn, monkeypatch):
    spec = argument_spec(fqcn, monkeypatch)
    missing = sorted(o for o in SHARED if not takes(spec, o))
    assert not missing, f"{fqcn} is in group pg but does not take {missing}: module_defaults would break it"
    assert spec["login_password"].get("no_log") is True


def test_every_module_of_this_collection_with_connection_options_is_in_the_group(monkeypatch):
    """A module outside pg that takes login_* would have to repeat them on every task."""
    members = set(pg_members())
    outside = []
    action_only = {p.stem for p in (ROOT / "plugins/action").glob("*.py")}  # documentation stubs, no main()
    for path in sorted((ROOT / "plugins/modules").glob("*.py")):
        if path.stem in action_only:
            continue
        fqcn = "agbotkit.dr." + path.stem
        spec = argument_spec(fqcn, monkeypatch)
        if ("login_host" in spec) != (fqcn in members):
            outside.append(fqcn)
    assert not outside, f"in group pg exactly when they take login_host at the top level: {outside}"


def test_every_community_postgresql_module_with_connection_options_is_in_the_group(monkeypatch):
    members = set(pg_members())
    takes_them, not_listed = [], []
    for path in sorted((COMMUNITY_PG / "plugins/modules").glob("postgresql_*.py")):
        fqcn = "community.postgresql." + path.stem
        if "login_host" in argument_spec(fqcn, monkeypatch):
            takes_them.append(fqcn)
            if fqcn not in members:
                not_listed.append(fqcn)
        else:
            assert fqcn not in members, f"{fqcn} takes no login_host: module_defaults for group pg would break it"
    assert len(takes_them) >= 20 and not not_listed, not_listed


def test_why_not_community_postgresql_all_and_why_login_db_stays_on_the_tasks(monkeypatch):
    """The two facts the group's shape rests on (community.postgresql 4.2.0)."""
    assert "postgresql_pg_hba" in runtime_groups(COMMUNITY_PG / "meta/runtime.yml")["all"]
    assert "login_host" not in argument_spec("community.postgresql.postgresql_pg_hba", monkeypatch)
    spec = argument_spec("community.postgresql.postgresql_db", monkeypatch)
    assert not takes(spec, "login_db") and "maintenance_db" in spec


# ---- the roles ---------------------------------------------------------------------------------------------------

def _action(task: dict) -> str | None:
    members = set(pg_members())
    for key in task:
        if key in members:
            return key
    return None


def _walk(tasks, covered: bool, found: list, path: Path):
    for task in tasks or []:
        here = covered or GROUP in (task.get("module_defaults") or {})
        if "block" in task:
            for part in ("block", "rescue", "always"):
                _walk(task.get(part), here, found, path)
            continue
        action = _action(task)
        if action:
            found.append((path, task.get("name"), action, here, task[action] or {}))


@functools.cache
def role_pg_tasks() -> tuple[tuple, ...]:
    found: list[tuple] = []
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        _walk(yaml.safe_load(path.read_text()), False, found, path)
    return tuple(found)


def test_the_walk_finds_the_roles_postgresql_tasks():
    found = role_pg_tasks()
    files = {p.relative_to(ROOT).as_posix() for p, *_ in found}
    assert {"roles/db_restore/tasks/assess.yml", "roles/db_restore/tasks/rehearse.yml",
            "roles/pgbackrest/tasks/archiving.yml", "roles/db_backup/tasks/database.yml"} <= files
    assert len(found) >= 20


@pytest.mark.parametrize("where", [f"{p.relative_to(ROOT)}: {n}" for p, n, *_ in role_pg_tasks()])
def test_every_role_postgresql_task_has_its_connection(where):
    path, name, action, covered, args = next(t for t in role_pg_tasks() if f"{t[0].relative_to(ROOT)}: {t[1]}" == where)
    if covered:
        repeated = sorted(k for k in args if k.startswith("login_") and k not in TASK_MAY_SET)
        assert not repeated, f"{where}: {repeated} come from module_defaults ({GROUP}); do not repeat them"
    else:
        missing = sorted({"login_host", "login_user", "login_password"} - set(args))
        assert not missing, (f"{where} ({action}) has no module_defaults for {GROUP} in its task file and no "
                             f"{missing}: it would connect wherever PGHOST/PGUSER/PGPASSWORD point")


def _defaults_values() -> list[tuple[Path, object]]:
    out = []

    def walk(tasks, path):
        for task in tasks or []:
            md = (task.get("module_defaults") or {})
            if GROUP in md:
                out.append((path, md[GROUP]))
            for part in ("block", "rescue", "always"):
                walk(task.get(part), path)

    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        walk(yaml.safe_load(path.read_text()), path)
    return out


def _keys(value, role_vars: dict) -> set[str]:
    """The option names a module_defaults value sets: a dict's keys, or those of the role variables a template names
    plus the quoted keys of the dicts it combines in."""
    if isinstance(value, dict):
        return set(value)
    keys = set(re.findall(r"'(\w+)':", value))
    for name in re.findall(r"\b(__\w+)\b", value):
        assert name in role_vars, f"module_defaults names {name}, which is not in the role's vars/main.yml"
        keys |= _keys(role_vars[name], role_vars)
    return keys


def test_the_roles_put_only_shared_options_in_the_groups_defaults():
    values = _defaults_values()
    assert len(values) >= 10
    for path, value in values:
        vars_file = path.parents[1] / "vars/main.yml"
        role_vars = yaml.safe_load(vars_file.read_text()) if vars_file.exists() else {}
        keys = _keys(value, role_vars)
        assert {"login_host", "login_user", "login_password"} <= keys, f"{path}: {sorted(keys)}"
        assert keys <= SHARED, f"{path}: {sorted(keys - SHARED)} is not taken by every member of {GROUP}"


# --------------------------------------------------------------------------------------------- group k8s

def test_every_k8s_group_member_of_this_collection_takes_kubernetes_cores_auth_options(monkeypatch):
    """group/agbotkit.dr.k8s extends kubernetes.core.k8s: a module_defaults entry for it hands kubeconfig, context,
    host, api_key, ... to this collection's members too, so each must take all of kubernetes.core's auth options."""
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

    group = runtime_groups(ROOT / "meta/runtime.yml")["k8s"]
    assert {"extend_group": ["kubernetes.core.k8s"]} in [e["metadata"] for e in group if isinstance(e, dict)]
    ours = [e for e in group if isinstance(e, str)]
    assert "k8s_resources" in ours
    for name in ours:
        spec = argument_spec("agbotkit.dr." + name, monkeypatch)
        missing = sorted(o for o in AUTH_ARG_SPEC if not takes(spec, o))
        assert not missing, f"agbotkit.dr.{name} is in group k8s but does not take {missing}"
        assert spec["api_key"].get("no_log") is True

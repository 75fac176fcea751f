"""Load the AWX configuration as code (awx/*.yml) and what it refers to, for the AWX tests."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.plugin_utils.awx import with_vars_files  # noqa: E402


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def _load_text(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader plus !unsafe


def load_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader plus !unsafe


def config() -> dict:
    data: dict = {}
    for path in sorted((ROOT / "awx").glob("*.yml")):
        data.update(load_yaml(path) or {})
    return data


def argspecs() -> dict:
    return {
        p.parts[-3]: (load_yaml(p) or {}).get("argument_specs") or {}
        for p in sorted(ROOT.glob("roles/*/meta/argument_specs.yml"))
    }


def playbooks() -> dict:
    return {
        f"playbooks/{p.name}": with_vars_files(load_yaml(p) or [], p.read_text(), str(p.parent), _load_text)
        for p in sorted((ROOT / "playbooks").glob("*.yml"))
    }


def provided_by_inventories() -> set:
    """Variables every non-lab inventory sets (an AWX job gets them from the inventory source)."""
    sets = [
        set((load_yaml(ROOT / f"inventories/{name}/group_vars/all/main.yml") or {}).keys())
        for name in ("production", "dr")
    ]
    return set.intersection(*sets)

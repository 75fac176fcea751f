"""Every role has a README (galaxy-importer refuses a role without one) and it matches its argument specs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("role_readme", ROOT / "dev" / "scripts" / "role_readme.py")
role_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_readme)


def test_every_role_readme_is_generated_from_its_argument_specs():
    roles = [r for r in sorted((ROOT / "roles").iterdir()) if (r / "meta").is_dir()]
    assert roles
    stale = [r.name for r in roles
             if not (r / "README.md").exists() or (r / "README.md").read_text() != role_readme.render(r)]
    assert stale == [], f"run: python dev/scripts/role_readme.py ({stale})"


def test_a_changed_spec_makes_the_readme_stale(tmp_path):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: Demo\n    options:\n"
        "      demo_secret: {type: str, no_log: true, description: A secret}\n")
    first = role_readme.render(role)
    assert "| `demo_secret` | str |" in first and "Secret: never logged." in first
    (role / "README.md").write_text(first.replace("# agbotkit.dr.demo", "# demo, by hand"))
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: Demo\n    options:\n"
        "      demo_count: {type: int, default: 3, description: How many}\n")
    second = role_readme.render(role)
    assert second.startswith("# demo, by hand")  # the hand-written part is kept
    assert "demo_secret" not in second and "| `demo_count` | int | `3` |" in second

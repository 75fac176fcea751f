#!/usr/bin/env python3
"""Write each role's README.md from its meta/argument_specs.yml (the one source of truth).

A README keeps whatever a person wrote above the marker line; everything below it is generated:
the entry points, their variables (type, default, choices, required, secret) and descriptions.

    python dev/scripts/role_readme.py           # rewrite the generated part of every role's README
    python dev/scripts/role_readme.py --check   # exit 1 and name the roles whose README is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- Everything below is generated from meta/argument_specs.yml by dev/scripts/role_readme.py -->"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _cell(value) -> str:
    return _text(value).replace("|", "\\|").replace("\n", " ").strip()


def _default(opt: dict) -> str:
    if "default" not in opt:
        return ""
    d = opt["default"]
    if isinstance(d, bool):
        return "true" if d else "false"
    if d in ("", [], {}):
        return f"`{d!r}`" if d == "" else f"`{d}`"
    return f"`{d}`"


def generated(role: Path) -> str:
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    name = role.name
    out = [MARKER, "", "## Entry points", ""]
    for ep, body in spec.items():
        tasks_from = "" if ep == "main" else f" tasks_from={ep}"
        how = f"`ansible.builtin.include_role: name=agbotkit.dr.{name}{tasks_from}`"
        out += [f"### `{ep}`: {_text(body.get('short_description'))}", "", how, ""]
        for para in body.get("description") or []:
            out += [_text(para), ""]
        opts = body.get("options") or {}
        if not opts:
            out += ["No variables.", ""]
            continue
        out += ["| variable | type | default | required | description |", "|---|---|---|---|---|"]
        for var, opt in opts.items():
            typ = opt.get("type", "str")
            if typ == "list" and opt.get("elements"):
                typ = f"list of {opt['elements']}"
            desc = _cell(opt.get("description"))
            if opt.get("choices"):
                desc += " Choices: " + ", ".join(f"`{c}`" for c in opt["choices"]) + "."
            if opt.get("no_log"):
                desc += " Secret: never logged."
            req = "yes" if opt.get("required") else ""
            out.append(f"| `{var}` | {typ} | {_default(opt)} | {req} | {desc} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render(role: Path) -> str:
    readme = role / "README.md"
    if readme.exists() and MARKER in readme.read_text():
        head = readme.read_text().split(MARKER)[0].rstrip() + "\n\n"
    else:
        spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        main = spec.get("main") or next(iter(spec.values()))
        head = f"# agbotkit.dr.{role.name}\n\n{_text(main.get('short_description'))}.\n\n"
    return head + generated(role)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for role in sorted((ROOT / "roles").iterdir()):
        if not (role / "meta" / "argument_specs.yml").exists():
            continue
        want = render(role)
        readme = role / "README.md"
        if readme.exists() and readme.read_text() == want:
            continue
        stale.append(role.name)
        if not check:
            readme.write_text(want)
    if check and stale:
        print("stale role READMEs (run: python dev/scripts/role_readme.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    if not check and stale:
        print("wrote: " + ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

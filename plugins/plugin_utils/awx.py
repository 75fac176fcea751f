# -*- coding: utf-8 -*-
# Copyright: agbotkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX/AAP configuration as code: surveys from role argument specs, and the consistency rules.

Pure functions over plain data (parsed YAML), shared by the ``agbotkit.dr.awx_*`` filters that
``playbooks/awx_configure.yml`` uses and by the tests that run job templates as AWX runs them.

- ``playbook_inputs(plays, argspecs, declared)``: every variable a playbook accepts, as argument
  spec options (the role entry points it runs, minus what the playbook fixes, plus the
  playbook-level inputs declared in ``awx/controller_inputs.yml``).
- ``survey_spec(template, inputs)``: the AWX survey of a job template, typed from those options.
- ``survey_extra_vars(spec, answers)``: the extra vars a launch with that survey produces
  (AWX's rule: an answer, else a default that passes the question's own validation).
- ``consistency(config, ...)``: the rules that keep the templates honest (see ``docs/awx.md``).
"""

from __future__ import annotations

import re

# argument spec type -> AWX survey question type
_TYPES = {"str": "text", "path": "text", "raw": "text", "int": "integer", "float": "float"}
TEXT_MAX = 1024


class AwxConfigError(ValueError):
    """A template, survey or input declaration that cannot be turned into controller objects."""


def _entry_points(node, out: list) -> None:
    """Collect (role, entry point, fixed vars) from a play's task tree."""
    if isinstance(node, list):
        for item in node:
            _entry_points(item, out)
        return
    if not isinstance(node, dict):
        return
    for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
        if key in node:
            _entry_points(node[key], out)
    for key in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
        if key in node:
            args = node[key] or {}
            out.append((args.get("name", ""), args.get("tasks_from", "main"), set((node.get("vars") or {}).keys())))


def role_entry_points(plays: list) -> list[tuple[str, str, set]]:
    """(role short name, entry point, variables the playbook sets itself) for every role a playbook runs."""
    found: list = []
    for play in plays or []:
        if not isinstance(play, dict):
            continue
        for role in play.get("roles") or []:
            if isinstance(role, str):
                found.append((role, "main", set()))
            else:
                name = role.get("role") or role.get("name", "")
                fixed = set((role.get("vars") or {}).keys()) | {
                    k for k in role if k not in ("role", "name", "vars", "tags", "when")
                }
                found.append((name, "main", fixed))
        _entry_points([play], found)
    return [(name.split(".")[-1], ep, fixed) for name, ep, fixed in found if name]


def with_vars_files(plays: list, text: str, base_dir: str, load) -> tuple[list, str]:
    """A playbook's plays with their ``vars_files`` merged into ``vars`` (a play's own vars win), and its text
    followed by those files' text: what the playbook sets and reads, wherever it is written."""
    import os

    out = []
    for play in plays or []:
        if isinstance(play, dict) and play.get("vars_files"):
            merged: dict = {}
            for name in play["vars_files"]:
                path = os.path.join(base_dir, name)
                with open(path, encoding="utf-8") as handle:
                    body = handle.read()
                text += "\n" + body
                merged.update(load(body) or {})
            out.append(dict(play, vars=dict(merged, **(play.get("vars") or {}))))
        else:
            out.append(play)
    return out, text


def play_vars(plays: list) -> set:
    """Variables a playbook's plays define themselves (``vars:``): never an input."""
    names: set = set()
    for play in plays or []:
        if isinstance(play, dict):
            names |= set((play.get("vars") or {}).keys())
    return names


def playbook_inputs(plays: list, argspecs: dict, declared: dict | None = None) -> dict:
    """Every variable the playbook accepts, as ``{name: option}`` in argument-spec form.

    ``argspecs`` maps a role's short name to its ``argument_specs`` mapping; ``declared`` holds the
    playbook-level inputs (``awx/controller_inputs.yml``) in the same form. A variable the playbook fixes
    (``vars:`` on the role, or of the play) is not an input. Each option gets ``_source`` ("role/entry").
    """
    inputs: dict = {}
    own = play_vars(plays)
    for role, entry, fixed in role_entry_points(plays):
        spec = (argspecs.get(role) or {}).get(entry)
        if spec is None:
            continue
        for name, option in (spec.get("options") or {}).items():
            if name in fixed or name in own or name in inputs:
                continue
            inputs[name] = dict(option or {}, _source=f"{role}/{entry}")
    for name, option in (declared or {}).items():
        inputs[name] = dict(option or {}, _source="playbook")
    return inputs


def required_inputs(plays: list, argspecs: dict, provided: set) -> set:
    """Required options of the entry points a playbook runs that neither the playbook nor ``provided`` sets."""
    missing: set = set()
    own = play_vars(plays)
    for role, entry, fixed in role_entry_points(plays):
        spec = (argspecs.get(role) or {}).get(entry) or {}
        for name, option in (spec.get("options") or {}).items():
            if (option or {}).get("required") and name not in fixed and name not in own and name not in provided:
                missing.add(name)
    return missing


_MARKUP = re.compile(r"\b(?:C|O|V|I|E|RV|B|M)\(([^()]*)\)")


def plain(text: str) -> str:
    """Argument-spec markup (C(x), O(x), V(x), ...) as plain text for a survey."""
    return _MARKUP.sub(r"\1", text)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def survey_question(field: dict, option: dict) -> dict:
    """One AWX survey question for ``field`` (``var`` plus optional overrides) typed by its ``option``."""
    var = field["var"]
    kind = option.get("type", "str")
    desc = option.get("description", "")
    if isinstance(desc, list):
        desc = " ".join(desc)
    desc = plain(str(desc))
    q = {
        "variable": var,
        "question_name": field.get("question") or var,
        "question_description": field.get("description") or desc,
        "required": bool(field.get("required", option.get("required", False))),
        "new_question": True,
    }
    default = field.get("default", option.get("default"))
    choices = field.get("choices", option.get("choices"))
    if option.get("no_log"):
        q.update(type="password", min=0, max=TEXT_MAX)
    elif kind == "bool":
        q.update(type="multiplechoice", choices="true\nfalse", min=None, max=None)
        default = None if default is None else _text(bool(default))
    elif kind == "list":
        if not choices:
            raise AwxConfigError(f"{var}: a list without choices cannot be a survey question (AWX has no list type)")
        q.update(type="multiselect", choices="\n".join(_text(c) for c in choices), min=None, max=None)
        default = None if default is None else "\n".join(_text(c) for c in default)
    elif choices:
        q.update(type="multiplechoice", choices="\n".join(_text(c) for c in choices), min=None, max=None)
        if default is not None and _text(default) not in [_text(c) for c in choices]:
            raise AwxConfigError(f"{var}: default {default!r} is not one of its choices {choices}")
    elif kind in _TYPES:
        t = _TYPES[kind]
        q.update(
            type=t,
            min=field.get("min", 0 if t == "text" else None),
            max=field.get("max", TEXT_MAX if t == "text" else None),
        )
    else:
        raise AwxConfigError(f"{var}: argument type {kind!r} has no survey question type")
    if field.get("confirm"):
        # a typed confirmation: the operator types the name of what is about to change
        q["type"] = "text"
        q["question_description"] = (q["question_description"] + " " if q["question_description"] else "") + (
            f"Type {field['confirm']} to confirm; anything else leaves the step undone."
        )
    if default is not None:
        # no default at all when the role computes one (from inventory): AWX then passes nothing
        q["default"] = default if q["type"] in ("integer", "float") else _text(default)
    return q


def survey_spec(template: dict, inputs: dict) -> dict:
    """AWX ``survey_spec`` of a job template whose ``survey_fields`` name inputs of its playbook."""
    spec = []
    seen = set()
    for field in template.get("survey_fields") or []:
        var = field["var"]
        if var in seen:
            raise AwxConfigError(f"{template.get('name')}: survey field {var} appears twice")
        seen.add(var)
        if var not in inputs:
            raise AwxConfigError(
                f"{template.get('name')}: survey field {var} is not a variable {template.get('playbook')} accepts"
            )
        q = survey_question(field, inputs[var])
        spec.append({k: v for k, v in q.items() if v is not None})
    return {"name": template.get("name", ""), "description": template.get("description", ""), "spec": spec}


def _valid(question: dict, value) -> bool:
    """AWX's own check of one answer (the rule it also applies to defaults before using them)."""
    t = question.get("type")
    if t in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return False
        lo, hi = question.get("min"), question.get("max")
        return (lo is None or len(value) >= int(lo)) and (hi is None or len(value) <= int(hi))
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "multiplechoice":
        return value in str(question.get("choices", "")).split("\n")
    if t == "multiselect":
        allowed = str(question.get("choices", "")).split("\n")
        vals = value if isinstance(value, list) else str(value).split("\n")
        return all(v in allowed for v in vals)
    return False


def survey_extra_vars(spec: dict, answers: dict | None = None) -> dict:
    """The extra vars AWX passes for a launch with ``answers``: answer, else a valid default, else nothing.

    Raises AwxConfigError for a missing required answer or an answer the question rejects.
    """
    answers = dict(answers or {})
    out: dict = {}
    for q in spec.get("spec", []):
        var = q["variable"]
        if var in answers:
            value = answers.pop(var)
            if not _valid(q, value):
                raise AwxConfigError(f"survey answer {var}={value!r} is not valid for a {q['type']} question")
        elif "default" in q and _valid(q, q["default"]):
            value = q["default"]
        elif q.get("required"):
            raise AwxConfigError(f"survey question {var} is required and has no answer")
        else:
            continue
        if q["type"] == "multiselect" and not isinstance(value, list):
            value = [v for v in str(value).split("\n") if v]
        out[var] = value
    if answers:
        raise AwxConfigError(f"answers for questions the survey does not ask: {sorted(answers)}")
    return out


def _names(items) -> set:
    return {i.get("name") for i in items or []}


def consistency(
    config: dict, playbooks: dict, argspecs: dict, declared: dict, provided: set, lab_only: dict
) -> list[str]:
    """Every rule the configuration must keep; returns the problems found (empty: consistent).

    ``playbooks`` maps ``playbooks/NAME.yml`` to its parsed plays and raw text; ``provided`` holds the
    variables every inventory sets; ``lab_only`` maps playbooks without a template to the reason.
    """
    problems: list[str] = []
    templates = config.get("controller_templates") or []
    by_playbook: dict = {}
    for t in templates:
        by_playbook.setdefault(t.get("playbook"), []).append(t)
    for path in sorted(playbooks):
        if path not in by_playbook and path not in lab_only:
            problems.append(f"{path} has no job template and is not listed as lab-only/CLI-only")
        if path in by_playbook and path in lab_only:
            problems.append(f"{path} has a job template but is also listed as lab-only")
    for path in sorted(lab_only):
        if path not in playbooks:
            problems.append(f"lab-only list names {path}, which does not exist")
    for t in templates:
        path = t.get("playbook")
        if path not in playbooks:
            problems.append(f"template {t.get('name')}: playbook {path} does not exist")
            continue
        plays, text = playbooks[path]
        own = declared.get(path) or {}
        for name in own:
            if not re.search(r"\b%s\b" % re.escape(name), text):
                problems.append(f"{path}: declared input {name} is never read by the playbook")
        inputs = playbook_inputs(plays, argspecs, own)
        try:
            spec = survey_spec(t, inputs)
        except AwxConfigError as exc:
            problems.append(str(exc))
            continue
        asked = {q["variable"] for q in spec["spec"]}
        fixed = set((t.get("extra_vars") or {}).keys())
        for name in sorted(required_inputs(plays, argspecs, provided | asked | fixed)):
            problems.append(f"template {t.get('name')}: required input {name} has no survey field")
        for name, option in own.items():
            if option.get("required") and name not in asked | fixed:
                problems.append(f"template {t.get('name')}: required input {name} has no survey field")
        for name in fixed:
            if name not in inputs:
                problems.append(f"template {t.get('name')}: extra var {name} is not a variable {path} accepts")
    tnames = _names(templates)
    wnames = _names(config.get("controller_workflows"))
    for s in config.get("controller_schedules") or []:
        target = s.get("unified_job_template")
        if target not in tnames | wnames:
            problems.append(f"schedule {s.get('name')}: template {target} does not exist")
    for w in config.get("controller_workflows") or []:
        for node in w.get("workflow_nodes") or []:
            ujt = node.get("unified_job_template") or {}
            if ujt.get("type", "job_template") == "job_template" and ujt.get("name") not in tnames:
                problems.append(
                    f"workflow {w.get('name')}: node {node.get('identifier')} runs unknown template {ujt.get('name')}"
                )
    notes = _names(config.get("controller_notifications"))
    for obj in templates + (config.get("controller_workflows") or []):
        for key in (
            "notification_templates_error",
            "notification_templates_success",
            "notification_templates_started",
            "notification_templates_approvals",
        ):
            for n in obj.get(key) or []:
                if n not in notes:
                    problems.append(f"{obj.get('name')}: notification {n} does not exist")
    return problems

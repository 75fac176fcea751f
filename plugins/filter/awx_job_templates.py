# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.agbotkit.dr.plugins.plugin_utils.awx import (
    AwxConfigError,
    playbook_inputs,
    survey_spec,
    with_vars_files,
)


def load_argspecs(root: str) -> dict:
    """Role short name -> its argument_specs mapping."""
    specs = {}
    roles = os.path.join(root, "roles")
    for name in sorted(os.listdir(roles)):
        path = os.path.join(roles, name, "meta", "argument_specs.yml")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                specs[name] = (yaml.safe_load(f) or {}).get("argument_specs") or {}
    return specs


def load_playbook(root: str, path: str) -> tuple[list, str]:
    full = os.path.join(root, path)
    with open(full, encoding="utf-8") as f:
        text = f.read()
    return with_vars_files(yaml.safe_load(text) or [], text, os.path.dirname(full), yaml.safe_load)


def awx_job_templates(templates, root, declared=None):
    declared = dict(declared or {})
    argspecs = load_argspecs(str(root))
    out = []
    for template in templates or []:
        t = {k: v for k, v in dict(template).items() if k != "survey_fields"}
        try:
            plays, _text = load_playbook(str(root), template["playbook"])
            spec = survey_spec(template, playbook_inputs(plays, argspecs, declared.get(template["playbook"])))
        except (AwxConfigError, OSError, KeyError, yaml.YAMLError) as exc:
            raise AnsibleFilterError(f"job template {template.get('name')}: {exc}") from exc
        t["survey_enabled"] = bool(spec["spec"])
        t["survey_spec"] = spec if spec["spec"] else {}
        out.append(t)
    return out


class FilterModule:
    def filters(self):
        return {"awx_job_templates": awx_job_templates}

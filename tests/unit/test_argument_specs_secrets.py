"""Every secret a role takes is marked no_log in its argument spec (issue 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET = re.compile(r"(password|token|secret|secret_key|access_key|routing_key|api_key|private_key)$")


def options():
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        for entry, spec in specs.items():
            for name, opt in (spec.get("options") or {}).items():
                yield f"{spec_file.parts[-3]}:{entry}:{name}", name, opt


SECRETS = [(label, opt) for label, name, opt in options() if SECRET.search(name)]


def test_secrets_are_found():
    assert len(SECRETS) >= 10


@pytest.mark.parametrize(("label", "opt"), SECRETS, ids=[s[0] for s in SECRETS])
def test_secret_option_is_no_log(label, opt):
    assert opt.get("no_log") is True, f"{label} takes a secret and must be no_log: true"

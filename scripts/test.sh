#!/usr/bin/env bash
# make test: lint, unit, integration against the lab, molecule scenarios.
# The lab is brought up for the run and taken down after it (unless it was already up).
set -uo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
status=0
step() { printf '\n=== %s ===\n' "$*"; }

step lint
$V/yamllint -s . || status=1
$V/ruff check . || status=1
$V/ansible-lint --offline -q || status=1

step "execution environment build context (ansible-builder create)"
bash scripts/ee_context.sh || status=1

was_up=0
$V/python lab/labctl.py status >/dev/null 2>&1 && was_up=1
step "lab up"
if ! $V/python lab/labctl.py up; then
  echo "lab failed to start: see .lab/logs/" >&2
  exit 1
fi
trap '[[ $was_up == 1 ]] || $V/python lab/labctl.py down >/dev/null' EXIT

step "molecule"
bash scripts/molecule.sh || status=1

step "pytest (unit + integration)"
mkdir -p artifacts
$V/pytest tests/unit tests/integration -p no:cacheprovider -rfE --junitxml=artifacts/junit.xml || status=1

exit $status

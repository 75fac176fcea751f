# agbotkit.dr — the commands (DESIGN.md "Commands"); what they run lives in dev/ (the harness, not shipped)
SHELL := /bin/bash
VENV  := .venv/bin
PY    := $(VENV)/python
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help setup lab-up lab-down lab-status drill test lint unit integration molecule bench clean awx-plan ee-context

help:
	@echo "make drill       set up, bring the lab up, run the region failover drill, print the report"
	@echo "make test        set up and run every test (lint, unit, integration, molecule)"
	@echo "make lab-up | lab-down | lab-status | bench | setup"
	@echo "make awx-plan    print every AWX/AAP object playbooks/awx_configure.yml would create (no controller needed)"
	@echo "make ee-context  ansible-builder create: the execution environment's build context in context/"

setup:
	@bash dev/scripts/setup.sh

lab-up: setup
	@$(PY) dev/lab/labctl.py up

lab-down:
	@if [ -x $(PY) ]; then $(PY) dev/lab/labctl.py down; else python3 dev/lab/labctl.py down; fi

lab-status:
	@$(PY) dev/lab/labctl.py status

drill: lab-up
	@bash dev/scripts/drill.sh

lint: setup
	$(VENV)/yamllint -s .
	$(VENV)/ruff check .
	$(VENV)/ansible-lint --offline

unit: setup
	$(VENV)/pytest -q tests/unit tests/lab/unit

integration: lab-up
	$(VENV)/pytest -q tests/integration tests/lab/integration

molecule: lab-up
	@bash dev/scripts/molecule.sh

test: setup
	@bash dev/scripts/test.sh

awx-plan: setup
	@mkdir -p artifacts && $(VENV)/ansible-playbook playbooks/awx_configure.yml -e awx_configure_plan_file=$(CURDIR)/artifacts/awx-plan.json

ee-context: setup
	@bash dev/scripts/ee_context.sh

bench: lab-up
	@bash dev/scripts/bench.sh

clean: lab-down
	rm -rf .lab reports artifacts

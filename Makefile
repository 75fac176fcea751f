# agbotkit.dr — the commands (DESIGN.md "Commands")
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
	@bash scripts/setup.sh

lab-up: setup
	@$(PY) lab/labctl.py up

lab-down:
	@if [ -x $(PY) ]; then $(PY) lab/labctl.py down; else python3 lab/labctl.py down; fi

lab-status:
	@$(PY) lab/labctl.py status

drill: lab-up
	@bash scripts/drill.sh

lint: setup
	$(VENV)/yamllint -s .
	$(VENV)/ruff check .
	$(VENV)/ansible-lint --offline

unit: setup
	$(VENV)/pytest -q tests/unit

integration: lab-up
	$(VENV)/pytest -q tests/integration

molecule: lab-up
	@bash scripts/molecule.sh

test: setup
	@bash scripts/test.sh

awx-plan: setup
	@mkdir -p artifacts && $(VENV)/ansible-playbook playbooks/awx_configure.yml -e awx_configure_plan_file=$(CURDIR)/artifacts/awx-plan.json

ee-context: setup
	@bash scripts/ee_context.sh

bench: lab-up
	@bash scripts/bench.sh

clean: lab-down
	rm -rf .lab reports artifacts

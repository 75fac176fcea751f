#!/usr/bin/env python3
"""Print a run's figures from its incident_timeline report: each phase's wall time, the time spent
inside tasks that call a service (AWS, Kubernetes, PostgreSQL, HTTP, Terraform, waits), and the
orchestration overhead = wall time minus that (Ansible's own work: templating, facts, includes,
asserts, and the gaps between tasks).

Usage: drill_figures.py [REPORT_DIR]   (default: the newest folder under reports/)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Actions that run inside Ansible without calling any service: their time is orchestration overhead.
INTERNAL = {
    "ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug", "ansible.builtin.include_tasks",
    "ansible.builtin.import_tasks", "ansible.builtin.include_role", "ansible.builtin.import_role",
    "ansible.builtin.include_vars", "ansible.builtin.validate_argument_spec", "ansible.builtin.meta",
    "ansible.builtin.fail", "ansible.builtin.copy", "ansible.builtin.template", "ansible.builtin.file",
    "ansible.builtin.slurp", "ansible.builtin.stat", "ansible.builtin.lineinfile", "ansible.builtin.set_stats",
    "agbotkit.dr.run_state",   # the runbook's resume state: a local file, no service
    "set_fact", "assert", "debug", "include_tasks", "include_role", "meta", "fail", "copy", "file", "slurp", "stat",
}


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    if len(argv) > 1:
        folder = Path(argv[1])
    else:
        candidates = sorted((root / "reports").glob("*/timeline.json"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            print("no report found under reports/", file=sys.stderr)
            return 1
        folder = candidates[-1].parent
    data = json.loads((folder / "timeline.json").read_text())
    wall = float(data["run"].get("seconds") or data["run"].get("duration_seconds") or 0)
    service = sum(float(t.get("seconds") or 0) for t in data["tasks"] if t.get("action") not in INTERNAL)
    print(f"phases of {data['run'].get('playbook', '?')} ({folder.name}):")
    for ph in data["phases"]:
        print(f"  {ph['name'][:48]:48} {float(ph['seconds']):8.1f} s")
    print(f"  {'wall time':48} {wall:8.1f} s")
    print(f"  {'waiting on services (tasks that call one)':48} {service:8.1f} s")
    print(f"  {'orchestration overhead (wall - waiting)':48} {wall - service:8.1f} s")
    figs = data.get("figures") or {}
    for key in ("rto", "rpo"):
        fig = figs.get(key) or {}
        if fig.get("seconds") is not None:
            print(f"  {key.upper()} {float(fig['seconds']):.1f} s against the {fig['objective']} s objective: "
                  f"{fig.get('status', '?')}")
        else:
            print(f"  {key.upper()} not measured in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

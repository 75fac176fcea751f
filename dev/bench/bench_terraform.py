#!/usr/bin/env python3
"""Terraform's CPU in the lab, by Go garbage-collector setting: what `make test` exports as GOGC.

    source .lab/env && .venv/bin/python dev/bench/bench_terraform.py [--reps 3] [--gogc 100,400,800]

Runs, in the dr workspace of the lab's Terraform state (as roles/infra_failover leaves it: run a region failover or
dev/playbooks/failback_lab.yml first), the two provider-loading commands the community.general.terraform module runs
on every call: `terraform validate` and a read-only `terraform plan` (-lock=false, nothing is saved or applied).
Each GOGC value runs --reps times, interleaved with the others; the table gives medians of wall and CPU seconds
(user + sys of Terraform and its AWS provider) and the peak resident memory, the first value (Go's default, 100) being
the baseline. Terraform's share of a region failover is most of its CPU besides Ansible's (measured: 26 of 61 s), so
the run of `make test` exports the setting the figures favour; the product leaves Go's default alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], env: dict) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT / "infra" / "terraform", env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 2):   # plan -detailed-exitcode is not used: 0 is expected, 2 tolerated
        sys.exit(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gogc", default="100,400,800", help="GOGC values, the first is the baseline")
    args = ap.parse_args()
    lab = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
    state = lab / "terraform"
    if not (state / "dr.tfvars.json").exists():
        sys.exit(f"no Terraform variables in {state}: run a region failover or dev/playbooks/failback_lab.yml first")
    base = {**os.environ, "TF_DATA_DIR": str(state / ".terraform"), "TF_IN_AUTOMATION": "1", "TF_WORKSPACE": "dr"}
    if (state / "terraformrc.hcl").exists():
        base["TF_CLI_CONFIG_FILE"] = str(state / "terraformrc.hcl")
    commands = {
        "validate": ["terraform", "validate", "-no-color"],
        "plan": ["terraform", "plan", "-lock=false", "-no-color", "-input=false",
                 "-var-file", str(state / "dr.tfvars.json")],
    }
    values = [v.strip() for v in args.gogc.split(",") if v.strip()]
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    peak: dict[str, int] = {}
    for _ in range(args.reps):
        for value in values:
            env = {**base, "GOGC": value}
            for name, cmd in commands.items():
                # peak memory: a fresh child-usage view per value is not available, so measure it in a subprocess
                wall, cpu, _ = run(cmd, env)
                figures.setdefault((name, value), []).append((wall, cpu))
            if value not in peak:
                out = subprocess.run(["/usr/bin/time", "-f", "%M", *commands["plan"]], cwd=ROOT / "infra" / "terraform",
                                     env=env, capture_output=True, text=True, check=False)
                peak[value] = int(out.stderr.strip().splitlines()[-1]) // 1024
    version = subprocess.run(["terraform", "version"], capture_output=True, text=True, check=False).stdout.split()[1]
    print(f"Terraform {version}, "
          f"lab {lab}, {args.reps} runs each, medians; CPU = user + sys of Terraform and its provider")
    print(f"{'command':10} {'GOGC':>6} {'wall s':>8} {'CPU s':>7} {'CPU vs ' + values[0]:>12} {'peak MB':>8}")
    for name in commands:
        base_cpu = statistics.median(c for _, c in figures[(name, values[0])])
        for value in values:
            walls = [w for w, _ in figures[(name, value)]]
            cpus = [c for _, c in figures[(name, value)]]
            cpu = statistics.median(cpus)
            print(f"{name:10} {value:>6} {statistics.median(walls):8.2f} {cpu:7.2f} {cpu / base_cpu:11.0%} "
                  f"{peak[value] if name == 'plan' else '':>8}")


if __name__ == "__main__":
    main()

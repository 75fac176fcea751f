#!/usr/bin/env bash
# make bench: DR plan §2's manual restore (A) against agbotkit.dr's (B), side by side on the lab's
# (part 1 the dump path, part 2 the pgBackRest point-in-time path: docs/bench.md)
# database at bench scale (reseeded when it is not). Works with LAB_DIR pointing at another lab.
#   bash dev/scripts/bench.sh [--rounds N] [--keep-work]      (BENCH_ROUNDS=N also sets the rounds)
# Prints the table and writes artifacts/bench.json; docs/bench.md says what is compared.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
export LAB_DIR=${LAB_DIR:-$PWD/.lab}
if [[ ! -f $LAB_DIR/lab.json ]]; then
  echo "[bench] no lab at $LAB_DIR: run \`make lab-up\` first (with the same LAB_DIR and LAB_*_PORT)" >&2
  exit 2
fi
# part 1 (issue 3): the logical path, A vs B; BENCH_LOGICAL=0 skips it
if [[ ${BENCH_LOGICAL:-1} != 0 ]]; then
  .venv/bin/python dev/bench/bench_restore.py "$@"
fi
# part 2 (issue 15): the physical point-in-time path (restore side, data lost, backup side); BENCH_PITR=0 skips it
if [[ ${BENCH_PITR:-1} != 0 ]]; then
  .venv/bin/python dev/bench/bench_pitr.py
fi

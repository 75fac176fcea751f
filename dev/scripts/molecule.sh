#!/usr/bin/env bash
# Run molecule scenarios against the lab (delegated driver: the lab is the platform).
#   bash dev/scripts/molecule.sh [SCENARIO ...]   (default: every scenario)
set -uo pipefail
cd "$(dirname "$0")/../.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
set -a; source "${LAB_DIR:-.lab}/env"; set +a
status=0
names=("$@")
if ((${#names[@]} == 0)); then
  for dir in extensions/molecule/*/; do name=$(basename "$dir"); [[ -f $dir/molecule.yml ]] && names+=("$name"); done
fi
for name in "${names[@]}"; do
  t=$SECONDS
  echo "--- molecule scenario $name"
  # the lab is the platform and has no destroy step, so forget any earlier run's state ("already prepared")
  molecule reset -s "$name" >/dev/null 2>&1 || true
  rc=0; molecule test -s "$name" || rc=$?
  echo "--- molecule scenario $name: $([[ $rc == 0 ]] && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - t)) s"
  ((rc == 0)) || status=1
done
exit $status

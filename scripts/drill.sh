#!/usr/bin/env bash
# make drill: run the main job against the lab and print where its report is.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
set -a; source "${LAB_DIR:-.lab}/env"; set +a
playbook=playbooks/region_failover.yml
[[ -f $playbook ]] || playbook=playbooks/lab_smoke.yml
echo "[drill] ansible-playbook -i inventories/lab $playbook ${DRILL_ARGS:-}"
start=$(date +%s%N)
ansible-playbook -i inventories/lab "$playbook" ${DRILL_ARGS:-}
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '[drill] %s finished in %d.%01d s\n' "$playbook" $((ms / 1000)) $(((ms % 1000) / 100))
.venv/bin/python scripts/drill_figures.py || true
latest=$(ls -1dt reports/*/ 2>/dev/null | head -1 || true)
if [[ -n $latest ]]; then
  echo "[drill] report: ${latest}report.html (and report.md, timeline.json, postmortem.md)"
fi

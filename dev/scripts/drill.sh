#!/usr/bin/env bash
# make drill: run the main job against the lab and print where its report is.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
set -a; source "${LAB_DIR:-.lab}/env"; set +a
playbook=playbooks/region_failover.yml
[[ -f $playbook ]] || playbook=dev/playbooks/lab_smoke.yml
# the lab's nightly jobs first (a database backup, then a snapshot copied to the recovery region): the drill restores
# that copy and verifies it against the backup's manifest. Skipped when a failover run is in progress (a resume).
state=${LAB_DIR:-.lab}/region_failover/region_failover.json
if [[ $playbook == playbooks/region_failover.yml ]] && ! grep -Eqs '"status": *"(running|failed)"' "$state"; then
  echo "[drill] ansible-playbook -i inventories/lab dev/playbooks/lab_nightly.yml   (lab: nightly backup + snapshot)"
  t0=$(date +%s%N)
  ansible-playbook -i inventories/lab dev/playbooks/lab_nightly.yml > "${LAB_DIR:-.lab}/logs/lab_nightly.log" 2>&1 \
    || { tail -30 "${LAB_DIR:-.lab}/logs/lab_nightly.log"; exit 1; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '[drill] lab_nightly.yml (not part of the failover figures) done in %d.%01d s\n' $((ms / 1000)) $(((ms % 1000) / 100))
fi
echo "[drill] ansible-playbook -i inventories/lab $playbook ${DRILL_ARGS:-}"
start=$(date +%s%N)
ansible-playbook -i inventories/lab "$playbook" ${DRILL_ARGS:-}
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '[drill] %s finished in %d.%01d s\n' "$playbook" $((ms / 1000)) $(((ms % 1000) / 100))
.venv/bin/python dev/scripts/drill_figures.py || true
latest=$(ls -1dt reports/*/ 2>/dev/null | head -1 || true)
if [[ -n $latest ]]; then
  echo "[drill] report: ${latest}report.html (and report.md, timeline.json, postmortem.md)"
fi

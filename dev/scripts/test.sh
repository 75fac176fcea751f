#!/usr/bin/env bash
# make test: every gate, in four lanes that run side by side, each stage timed.
#
#   static  lint (yamllint, ruff, ansible-lint), role READMEs, ansible-test sanity and
#           galaxy-importer on the built artifact, the EE build context, unit tests
#           (tests/unit and the lab's own tests/lab/unit)                             (no lab)
#   lab-a   lab A (LAB_DIR, LAB_*_PORT as given): plan §2 and the physical path, incident, kill switch, approvals, given results (LANE_A*)
#   lab-b   lab B (LAB_DIR=.lab-b, every port + 6000): everything not listed for A or C, e.g. plan §1's tests
#   lab-c   lab C (LAB_DIR=.lab-c, every port + 6100): plan §3, §4, readiness, AWX (LANE_C*)
# Three labs, not four: on 2 cores a fourth lab made the run slower, not faster (README, Tests).
#
# Integration tests share one lab per lane (faults are per lab), so separate labs let the
# suites that mostly wait on services overlap. Balance the lanes by the pytest durations each run prints
# (artifacts/lanes/<lane>.log, "slowest durations"): the run takes as long as its longest lane. Integration test files are tests/integration/test_*.py
# and the lab's own tests/lab/integration/test_*.py, listed below by basename. A new test file or
# molecule scenario goes to lab-b unless listed for A or C: nothing is ever left out. Logs: artifacts/lanes/<lane>.log
# (printed at the end). TEST_LANES="static lab-a" runs only those lanes.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
V=$ROOT/.venv/bin
export ANSIBLE_CONFIG=$ROOT/ansible.cfg PATH=$ROOT/.venv/bin:$PATH
T0=$SECONDS
mkdir -p artifacts/lanes
rm -f artifacts/lanes/* artifacts/junit-*.xml

# Which integration test files and molecule scenarios run on labs A and C; everything else runs on lab B.
LANE_A="test_db_restore.py test_modules_db.py test_restore_trust.py test_db_restore_physical.py test_runbook_inputs.py
        test_incident.py test_kill_switch_playbook.py test_backup_terraform.py test_approval.py"
LANE_A_MOLECULE="db_restore pitr security_breach"
# test_awx_jobs.py expects a lab without a pgBackRest stanza ("DR | pgBackRest backup" must refuse): never on lab A,
# whose molecule pitr makes one (ci6b: it failed there); on C it runs before test_readiness.py makes one.
LANE_C="test_cluster_recover.py test_security_breach.py test_lab_k8s.py test_lab_k8s_pods.py test_readiness.py
        test_awx_jobs.py"
LANE_C_MOLECULE="cluster_recover region_failover"
# Scenarios that are not run, each with its reason (printed by every run). Empty: every scenario runs in a lane.
declare -A MOLECULE_NOT_RUN=(
)
LANES=${TEST_LANES:-static lab-a lab-b lab-c}

stamp() { printf '[test %s +%4ds] %s\n' "$(date +%H:%M:%S)" $((SECONDS - T0)) "$*"; }

# cpu_now: CPU seconds (user + sys) of the finished children of this shell, in CPU (run it in the lane's shell, never
# in $(...): a subshell has its own, empty, count). Lab services are daemons, not children: their CPU is not in it.
cpu_now() {
  local f=$ROOT/artifacts/lanes/.times.$BASHPID
  times > "$f"
  CPU=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
                       printf "%d", t }' "$f")
  rm -f "$f"
}

# step NAME CMD...: run, time (wall and CPU seconds), and record one stage of a lane (in the lane's log)
step() {
  local name=$1; shift
  local t=$SECONDS rc=0 c0
  cpu_now; c0=$CPU
  printf '\n=== %s ===\n' "$name"
  "$@" || rc=$?
  cpu_now
  printf '=== %s: %s in %d s (CPU %d s) ===\n' "$name" "$([[ $rc == 0 ]] && echo passed || echo "FAILED (exit $rc)")" \
    $((SECONDS - t)) $((CPU - c0))
  printf '%-34s %-8s %5d s wall %5d s CPU\n' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" $((SECONDS - t)) \
    $((CPU - c0)) >> "$STAGES"
  return $rc
}

# lab_env NAME: point the lab's tools (labctl, tests, molecule) at lab NAME's folder and ports
lab_env() {
  local off var def
  case $1 in
    lab-a) return 0 ;;
    lab-b) export LAB_DIR=$ROOT/.lab-b; off=6000 ;;  # B and C above the ephemeral range (32768-60999)
    lab-c) export LAB_DIR=$ROOT/.lab-c; off=6100 ;;
  esac
  for pair in LAB_PG_PORT:55432 LAB_AWS_PORT:55000 LAB_AWS_TLS_PORT:55443 LAB_K8S_PORT:56443 LAB_MINIBOT_PORT:59091 \
              LAB_RTDS_PORT:58765 LAB_SINK_PORT:58080 LAB_SMTP_PORT:58025; do
    var=${pair%%:*}; def=${pair#*:}
    export "$var=$(( ${!var:-$def} + off ))"
  done
}

lane_static() {
  local status=0
  step yamllint "$V/yamllint" -s . || status=1
  step ruff "$V/ruff" check . || status=1
  step ansible-lint "$V/ansible-lint" --offline -q || status=1
  step "role READMEs" "$V/python" dev/scripts/role_readme.py --check || status=1
  step "sanity + galaxy-importer" bash dev/scripts/sanity.sh || status=1
  step "EE build context (ansible-builder create)" bash dev/scripts/ee_context.sh || status=1
  step "unit tests" "$V/pytest" tests/unit tests/lab/unit -q -p no:cacheprovider -rfE --junitxml=artifacts/junit-unit.xml || status=1
  return $status
}

# in_lane LIST NAME: is NAME in the whitespace-separated LIST
in_lane() { [[ " $(echo $1) " == *" $2 "* ]]; }

# lane_lab NAME "molecule scenarios" "pytest files"
lane_lab() {
  local name=$1 scenarios=$2 files=$3 status=0
  if [[ -n ${TEST_PLAN:-} ]]; then echo "$name ($LAB_DIR, PG port $LAB_PG_PORT): molecule [$scenarios] pytest [$files]"; return 0; fi
  step "$name: lab up" "$V/python" dev/lab/labctl.py up || { echo "lab failed to start: see ${LAB_DIR:-.lab}/logs/"; return 1; }
  if [[ -n $scenarios ]]; then
    step "$name: molecule $scenarios" bash dev/scripts/molecule.sh $scenarios || status=1
  fi
  if [[ -n $files ]]; then
    # shellcheck disable=SC2086
    step "$name: pytest" "$V/pytest" $files -p no:cacheprovider -rfE --durations=15 \
      --junitxml="artifacts/junit-$name.xml" || status=1
  fi
  lab_services_cpu "$name"
  return $status
}

# lab_services_cpu NAME: the CPU seconds the lab's own processes (its services, PostgreSQL with its backends, the
# pods the emulator ran) have used since lab up: daemons, so not in any stage's CPU. One line in the stages table.
lab_services_cpu() {
  local cpu
  cpu=$("$V/python" - "${LAB_DIR:-$ROOT/.lab}" <<'PY'
import os, pathlib, sys
lab = pathlib.Path(sys.argv[1])
files = list((lab / "pids").glob("*.pid")) + [lab / "pg" / "data" / "postmaster.pid"]
ticks = 0
for f in files:
    try:
        pid = f.read_text().split()[0]
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    except (OSError, IndexError, ValueError):
        pass
print(ticks // os.sysconf("SC_CLK_TCK"))
PY
)
  printf '%-34s %-8s %5s   wall %5d s CPU\n' "$1: lab services (since up)" "-" "" "$cpu" >> "$STAGES"
}

lane() {
  local name=$1
  STAGES=$ROOT/artifacts/lanes/$name.stages
  : > "$STAGES"
  [[ $name == static ]] && { lane_static; return; }
  lab_env "$name"
  local files="" mol="" f s base
  for f in tests/integration/test_*.py tests/lab/integration/test_*.py; do
    base=$(basename "$f")
    case $name in
      lab-a) in_lane "$LANE_A" "$base" && files+="$f " ;;
      lab-c) in_lane "$LANE_C" "$base" && files+="$f " ;;
      lab-b) in_lane "$LANE_A $LANE_C" "$base" || files+="$f " ;;
    esac
  done
  for s in extensions/molecule/*/molecule.yml; do
    base=$(basename "$(dirname "$s")")
    if [[ -n ${MOLECULE_NOT_RUN[$base]:-} ]]; then
      [[ $name == lab-b ]] && echo "NOT RUN: molecule $base: ${MOLECULE_NOT_RUN[$base]}"
      continue
    fi
    case $name in
      lab-a) in_lane "$LANE_A_MOLECULE" "$base" && mol+="$base " ;;
      lab-c) in_lane "$LANE_C_MOLECULE" "$base" && mol+="$base " ;;
      lab-b) in_lane "$LANE_A_MOLECULE $LANE_C_MOLECULE" "$base" || mol+="$base " ;;
    esac
  done
  lane_lab "$name" "$mol" "$files"
}

# TEST_PLAN=1: print what each lane would run, and run nothing
if [[ -n ${TEST_PLAN:-} ]]; then
  for name in $LANES; do [[ $name == static ]] || ( LAB_DIR=$ROOT/.lab; LAB_PG_PORT=${LAB_PG_PORT:-55432}; lane "$name" ); done
  exit 0
fi

# labs that this run starts are stopped at the end; a lab that was already up is left alone
declare -A was_up=()
cleanup() {
  for name in lab-a lab-b lab-c; do
    [[ ${was_up[$name]:-1} == 0 ]] || continue
    ( lab_env "$name"; "$V/python" dev/lab/labctl.py down >/dev/null 2>&1 )
  done
}
trap cleanup EXIT
for name in lab-a lab-b lab-c; do
  [[ " $LANES " == *" $name "* ]] || continue
  if ( lab_env "$name"; "$V/python" dev/lab/labctl.py status >/dev/null 2>&1 ); then
    was_up[$name]=1
  else
    was_up[$name]=0
  fi
done

# machine_ticks: jiffies of the whole machine since boot, "busy total" (every process: the labs' services too)
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
read -r BUSY0 TOTAL0 < <(machine_ticks)
# The labs' pace (README, Tests): three labs idle between tests cost CPU the tests need. The bot writes an order every
# 0.3 s (lab default 0.1), the Kubernetes emulator's controllers run after every change and else every second (lab
# default 0.25 s), its kubelet probes every second (0.5 s). Measured on one idle lab: 0.06 -> 0.03 cores.
# The feed ticks every 0.2 s (lab default 0.1): each rtds-client pod costs the feed and itself CPU per tick; verify's
# RTDS check (20 ticks) then takes 2 s instead of 1, inside the tests' verify_rtds_timeout of 5 s.
export LAB_MINIBOT_TICK=${LAB_MINIBOT_TICK:-0.3} LAB_K8S_RECONCILE_SECONDS=${LAB_K8S_RECONCILE_SECONDS:-1} \
       LAB_K8S_PROBE_SECONDS=${LAB_K8S_PROBE_SECONDS:-1} LAB_RTDS_TICK=${LAB_RTDS_TICK:-0.2}
stamp "labs' pace: bot tick ${LAB_MINIBOT_TICK} s, feed tick ${LAB_RTDS_TICK} s, emulator controllers ${LAB_K8S_RECONCILE_SECONDS} s, probes ${LAB_K8S_PROBE_SECONDS} s"
# Terraform and its AWS provider (Go) spend a fifth of their CPU in the garbage collector at Go's default (GOGC=100):
# at 400 a validate/plan costs 18-24 % less CPU for 1.6x the peak memory (~490 MB), dev/bench/bench_terraform.py.
# Terraform is about 40 % of a region failover's CPU. Only the test run sets it; the product leaves Go's default.
export GOGC=${GOGC:-400}
stamp "Go garbage collector (Terraform, its provider, kubectl): GOGC=${GOGC}"
# lab A runs on what the environment says; B and C add their offset to it: say so when it is not the default
inherited=$(env | grep -E '^LAB_(DIR|[A-Z0-9_]+_PORT)=' | sort | tr '\n' ' ')
[[ -z $inherited ]] || stamp "lab settings from the environment (lab A uses them, B and C add their offset): $inherited"
stamp "lanes: $LANES (logs in artifacts/lanes/); machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A pid=()
for name in $LANES; do
  ( lane "$name" ) > "artifacts/lanes/$name.log" 2>&1 &
  pid[$name]=$!
done

status=0
declare -A rc=() took=()
for name in $LANES; do
  wait "${pid[$name]}"; rc[$name]=$?
  took[$name]=$((SECONDS - T0))
  stamp "lane $name finished: $([[ ${rc[$name]} == 0 ]] && echo passed || echo "FAILED (exit ${rc[$name]})")"
  [[ ${rc[$name]} == 0 ]] || status=1
done

for name in $LANES; do
  printf '\n################ lane %s ################\n' "$name"
  cat "artifacts/lanes/$name.log"
done

cpu_now
printf '\n################ stages (wall and CPU seconds of each stage) ################\n'
for name in $LANES; do
  printf -- '--- lane %s (%s)\n' "$name" "$([[ ${rc[$name]} == 0 ]] && echo passed || echo FAILED)"
  cat "artifacts/lanes/$name.stages"
done
printf 'all lanes: %d s wall, %d s CPU (the test processes; the labs'"'"' services are not counted): %.1f cores busy\n' \
  $((SECONDS - T0)) "$CPU" "$(awk -v c="$CPU" -v w=$((SECONDS - T0 + 1)) 'BEGIN { printf "%.1f", c / w }')"
read -r BUSY1 TOTAL1 < <(machine_ticks)
printf 'machine: %s of %d cores busy on average during the run (every process, the labs'"'"' services included)\n' \
  "$(awk -v b=$((BUSY1 - BUSY0)) -v t=$((TOTAL1 - TOTAL0)) -v n="$(nproc)" 'BEGIN { printf "%.2f", t ? n * b / t : 0 }')" \
  "$(nproc)"
# one summary line over every pytest run (the last line of the output)
"$V/python" - "$((SECONDS - T0))" "$status" artifacts/junit-*.xml <<'PY'
import sys
import xml.etree.ElementTree as ET

wall, status, files = sys.argv[1], sys.argv[2], sys.argv[3:]
tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in files:
    try:
        root = ET.parse(f).getroot()
    except (OSError, ET.ParseError):
        continue
    for suite in (root.iter("testsuite")):
        for k in tot:
            tot[k] += int(suite.get(k, 0))
passed = tot["tests"] - tot["failures"] - tot["errors"] - tot["skipped"]
print(f"make test: {'passed' if status == '0' else 'FAILED'} in {wall} s wall; pytest: {passed} passed, "
      f"{tot['failures']} failed, {tot['errors']} errors, {tot['skipped']} skipped")
PY
exit $status

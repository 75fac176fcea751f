#!/usr/bin/env bash
# Idempotent setup: .venv with pinned packages, the five collections unpacked
# from the ansible wheel, PostgreSQL 15 through apt only where missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
ANSIBLE_WHEEL_VERSION=12.3.0
COLLECTIONS="amazon/aws community/aws community/general community/postgresql kubernetes/core awx/awx"
say() { printf '[setup] %s\n' "$*"; }

# --- system prerequisites -------------------------------------------------
need_apt=()
PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
if [[ -z "$PGBIN" || ! -x "$PGBIN/postgres" || ! -x "$PGBIN/pg_amcheck" ]]; then
  need_apt+=(postgresql-15 postgresql-contrib)
fi
command -v psql >/dev/null || need_apt+=(postgresql-client-15)
command -v unzip >/dev/null || need_apt+=(unzip)
# pgBackRest (issue 15): the physical backups and point-in-time restores (Debian 12: 2.45)
command -v pgbackrest >/dev/null || need_apt+=(pgbackrest)
# the incident report test renders report.html in headless Chromium (skipped outside CI when absent)
if [[ "${CI:-}" == "true" || "${AGBOTKIT_INSTALL_CHROMIUM:-}" == "1" ]]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
fi
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing system packages: ${need_apt[*]}; install them with: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 2
  fi
  say "installing ${need_apt[*]} with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- python venv -----------------------------------------------------------
if ! command -v "$PY" >/dev/null; then
  say "Python 3.11 not found ($PY); install python3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat $stamp 2>/dev/null)" != "$want" ]]; then
  say "creating .venv and installing requirements.txt"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$want" > $stamp
else
  say ".venv up to date"
fi

# --- collections from the ansible wheel ------------------------------------
cdir=.collections/ansible_collections
cstamp=.collections/.ansible-$ANSIBLE_WHEEL_VERSION
if [[ ! -f $cstamp ]]; then
  say "unpacking collections from ansible==$ANSIBLE_WHEEL_VERSION"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" "ansible==$ANSIBLE_WHEEL_VERSION"
  pats=()
  for c in $COLLECTIONS; do pats+=("ansible_collections/$c/*"); done
  rm -rf "$cdir"; mkdir -p .collections
  (cd .collections && unzip -q -o "$tmp"/ansible-*.whl "${pats[@]}")
  rm -rf "$tmp"
  touch $cstamp
fi
# --- TimescaleDB stand-in (SQL-only extension; the real one cannot be installed here) ---
if [[ $(id -u) -eq 0 ]]; then
  bash dev/lab/timescaledb_standin/install.sh >/dev/null || say "TimescaleDB stand-in not installed (see above); its tests will fail"
elif [[ ! -f /usr/share/postgresql/15/extension/timescaledb.control ]]; then
  say "note: run 'sudo bash dev/lab/timescaledb_standin/install.sh' for the TimescaleDB stand-in tests"
fi

# this checkout is agbotkit.dr
mkdir -p $cdir/agbotkit
ln -sfn ../../.. $cdir/agbotkit/dr
ver=$(.venv/bin/ansible --version 2>/dev/null || true)
say "ready: ${ver%%$'\n'*}"

#!/usr/bin/env bash
# Event-Driven Ansible in its own venv (.venv-eda): ansible-rulebook 1.3.2 pins websockets<15.1, which conflicts
# with the websockets 17.4 of requirements.txt. Needs Java 17 (Debian 12: openjdk-17-jre-headless).
set -euo pipefail
cd "$(dirname "$0")/../.."
stamp=.venv-eda/.requirements.sha
want=$(sha256sum requirements-eda.txt | cut -d' ' -f1)
if [[ -x .venv-eda/bin/ansible-rulebook && "$(cat $stamp 2>/dev/null)" == "$want" ]]; then
  exit 0
fi
if ! java -version >/dev/null 2>&1; then
  echo "eda-setup: ansible-rulebook needs Java 17: apt-get install -y openjdk-17-jre-headless" >&2
  exit 2
fi
echo "[eda-setup] creating .venv-eda with ansible-rulebook"
[[ -x .venv-eda/bin/python ]] || python3 -m venv .venv-eda
.venv-eda/bin/pip install -q --disable-pip-version-check -r requirements-eda.txt 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
echo "$want" > $stamp

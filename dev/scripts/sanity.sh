#!/usr/bin/env bash
# The ecosystem's own gates, offline, on the product: the collection artifact that
# `ansible-galaxy collection build` makes (galaxy.yml's build_ignore keeps dev/ (the lab, bench,
# scripts, lab-only playbooks) and tests/ out of it, checked below; ruff and yamllint check those in `make lint`).
#   1. ansible-test sanity --python 3.11 on the artifact, unpacked as ansible_collections/agbotkit/dr
#   2. galaxy-importer on the artifact
#   bash dev/scripts/sanity.sh [--test NAME ...]   (extra args go to ansible-test sanity; skips step 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
V=$ROOT/.venv/bin
IMPORTER_VERSION=0.4.44
say() { printf '[sanity] %s\n' "$*"; }

# ansible-test bootstraps pip in its venvs with a script it downloads from a host these machines
# cannot reach. A stand-in at the cache path it checks first: ensurepip, then the pip it asks for,
# with the machine's CA bundle (ansible-test's venvs do not read the machine's pip settings).
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
for v in 24_2 25_3; do
  f=$cache/get_pip_$v.py
  [[ -s $f ]] && grep -q agbotkit-standin "$f" && continue
  cat > "$f" <<'PY'
# agbotkit-standin: offline replacement for get-pip.py (written by agbotkit.dr's dev/scripts/sanity.sh)
import os
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
cert = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--cert", cert, *args])
PY
done

work=$(mktemp -d "${TMPDIR:-/tmp}/agbotkit-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$V/ansible-galaxy" collection build -f --output-path "$work/dist" >/dev/null
artifact=$(ls "$work"/dist/agbotkit-dr-*.tar.gz)
# the product only: nothing of the harness (dev/: lab, bench, scripts, lab-only playbooks; tests/) is shipped
harness=$(tar -tzf "$artifact" | grep -E '^(\./)?(dev|tests|lab|bench|scripts|extensions/molecule)(/|$)' || true)
if [[ -n $harness ]]; then
  say "the artifact ships harness files (add them to galaxy.yml build_ignore):"; echo "$harness" | head -20
  exit 1
fi
say "$(basename "$artifact"): $(tar -tzf "$artifact" | grep -vc '/$') files, no dev/ or tests/ content"
dest=$work/ansible_collections/agbotkit/dr
mkdir -p "$dest"
tar -xzf "$artifact" -C "$dest"
[[ -d tests/sanity ]] && mkdir -p "$dest/tests" && cp -r tests/sanity "$dest/tests/"
# the dependencies beside it, where ansible-test looks for them
for ns in "$ROOT"/.collections/ansible_collections/*; do
  [[ $(basename "$ns") == agbotkit ]] && continue
  ln -s "$ns" "$work/ansible_collections/$(basename "$ns")"
done

status=0
say "ansible-test sanity --python 3.11 on $(basename "$artifact")"
t0=$SECONDS
(cd "$dest" && git init -q && git add -A && \
  "$V/ansible-test" sanity --python 3.11 --color no "$@" 2>&1 | grep -v "is ignored: it is neither") || status=1
say "ansible-test sanity: exit $status, $((SECONDS - t0)) s"
[[ $# -gt 0 ]] && exit $status

# galaxy-importer in its own venv (it pins its own ansible-lint); ansible-lint is off in it because
# offline it cannot resolve our dependencies; `make lint` runs ansible-lint with them present.
gi=$ROOT/.venv/importer
if [[ ! -x $gi/bin/python || ! -f $gi/.v$IMPORTER_VERSION ]]; then
  say "installing galaxy-importer $IMPORTER_VERSION into .venv/importer"
  python3.11 -m venv "$gi"
  "$gi/bin/pip" install -q --disable-pip-version-check "galaxy-importer==$IMPORTER_VERSION" 2>&1 | { grep -v "is ignored" || true; }
  touch "$gi/.v$IMPORTER_VERSION"
fi
# Galaxy's importer has the `ansible` package installed, so ansible-doc resolves the dependencies' doc fragments
# (amazon.aws.common.modules, ...) from site-packages: the same here, with the collections `make setup` unpacked.
sp=$("$gi/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$sp/ansible_collections"
for ns in "$ROOT"/.collections/ansible_collections/*; do
  [[ $(basename "$ns") == agbotkit ]] && continue
  ln -sfn "$ns" "$sp/ansible_collections/$(basename "$ns")"
done
t0=$SECONDS
printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = False\n' > "$work/importer.cfg"
if (cd "$work" && GALAXY_IMPORTER_CONFIG=$work/importer.cfg PATH=$gi/bin:$PATH \
      "$gi/bin/python" -m galaxy_importer.main "$artifact" > "$work/importer.log" 2>&1) \
   && grep -q "Importer processing completed successfully" "$work/importer.log" \
   && ! grep -E "^(ERROR|WARNING)" "$work/importer.log"; then
  say "galaxy-importer: passed, $((SECONDS - t0)) s"
else
  tail -20 "$work/importer.log"
  say "galaxy-importer: FAILED, $((SECONDS - t0)) s"; status=1
fi
exit $status

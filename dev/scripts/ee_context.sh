#!/usr/bin/env bash
# ansible-builder create: the execution environment's build context (context/Containerfile and what it copies).
# Building the image needs a container engine (podman/docker) and the base image's registry: not on these machines.
# Elsewhere: ansible-builder build -t <registry>/agbotkit-dr-ee:<version> && podman push ... (README "Running from AWX/AAP").
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${EE_CONTEXT_DIR:-artifacts/ee-context}
rm -rf "$out" artifacts/collection
# the collection itself goes into the image (execution-environment.yml additional_build_files)
.venv/bin/ansible-galaxy collection build --force --output-path artifacts/collection >/dev/null
.venv/bin/ansible-builder create -f execution-environment.yml -c "$out" --output-filename Containerfile -v 1
for f in Containerfile _build/requirements.yml _build/requirements.txt _build/bindep.txt _build/collection/agbotkit-dr-*.tar.gz; do
  compgen -G "$out/$f" >/dev/null && [[ -s $(compgen -G "$out/$f" | head -1) ]] || { echo "ee-context: $out/$f is missing or empty" >&2; exit 1; }
done
echo "ee-context: build context in $out ($(find "$out" -type f | wc -l) files)"

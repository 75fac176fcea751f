#!/usr/bin/env bash
# Install the SQL-only TimescaleDB stand-in into PostgreSQL's extension directory. Idempotent:
# copies only files that differ; refuses to overwrite a real TimescaleDB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [[ ! -x $PG_CONFIG ]]; then
  PG_CONFIG=$(command -v pg_config || true)
  [[ -n $PG_CONFIG ]] || { echo "pg_config not found: set PG_CONFIG=/path/to/pg_config" >&2; exit 2; }
fi
dest="$("$PG_CONFIG" --sharedir)/extension"
marker=agbotkit-dr-standin
if [[ -f $dest/timescaledb.control ]] && ! grep -q "$marker" "$dest/timescaledb.control"; then
  echo "a real TimescaleDB is installed in $dest: not overwriting it with the stand-in" >&2
  exit 3
fi
if [[ ! -w $dest ]]; then
  echo "cannot write $dest: run as root (sudo $0)" >&2
  exit 2
fi
changed=0
for f in timescaledb.control timescaledb--2.14.2.sql; do
  if ! cmp -s "$here/$f" "$dest/$f"; then
    install -m 0644 "$here/$f" "$dest/$f"
    changed=1
  fi
done
if ((changed)); then echo "timescaledb stand-in installed in $dest"; else echo "timescaledb stand-in already installed in $dest"; fi

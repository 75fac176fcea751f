#!/bin/sh
# The lab primary's archive_command (dev/lab/labctl.py): pgbackrest_archive_push.sh LAB_DIR %p %f
# (its name holds "pgbackrest": `pgbackrest check` refuses an archive_command without it)
#  1. keeps the gzipped copy in LAB_DIR/pg/wal_archive that the RDS stand-in replays (dev/lab/services/rds_standin.py);
#  2. pushes the segment to each pgBackRest repository of the lab whose stanza ag_botkit exists:
#     - LAB_DIR/pgbackrest/pgbackrest.conf: the lab inventory's repository (posix, LAB_DIR/pgbackrest/repo), once
#       playbooks/pgbackrest.yml has created the stanza;
#     - LAB_DIR/pgbackrest-s3/pgbackrest.conf: an S3 repository in the lab's moto through its TLS listener
#       (docs/pgbackrest_repository.md; tests/integration/test_pgbackrest_s3.py writes it).
#     An S3 stanza lives in moto's memory and is gone when the AWS server restarts: the script asks the repository
#     (pgbackrest repo-ls) whether archive.info is there once per AWS server process (the pid, remembered in
#     <conf dir>/stanza.aws-pid), and pushes only then. A failing push fails archive_command, as it should.
# The fault pg.archive_fail (labctl fault on pg.archive_fail) makes it fail, as a full or unreachable repository would.
set -eu
lab=$1 path=$2 name=$3
if [ -e "$lab/faults/pg.archive_fail" ]; then
  echo "pgbackrest_archive_push.sh: fault pg.archive_fail is on: refusing to archive $name" >&2
  exit 1
fi
arch="$lab/pg/wal_archive"
if [ ! -f "$arch/$name.gz" ]; then
  gzip -1 < "$path" > "$arch/$name.gz.tmp"
  mv "$arch/$name.gz.tmp" "$arch/$name.gz"
fi

# stanza_ready CONF: the stanza ag_botkit exists in CONF's repository
stanza_ready() {
  conf=$1 dir=$(dirname "$1")
  type=$(sed -n 's/^repo1-type=//p' "$conf" | head -n 1)
  if [ "$type" != s3 ]; then
    repo=$(sed -n 's/^repo1-path=//p' "$conf" | head -n 1)
    [ -f "${repo:-$dir/repo}/archive/ag_botkit/archive.info" ]
    return
  fi
  aws=$(cat "$lab/pids/aws.pid" 2>/dev/null || echo none)
  [ "$(cat "$dir/stanza.aws-pid" 2>/dev/null || true)" = "$aws" ] && return 0
  if pgbackrest --config="$conf" --stanza=ag_botkit repo-ls archive/ag_botkit 2>/dev/null | grep -qx 'archive.info'; then
    echo "$aws" > "$dir/stanza.aws-pid" 2>/dev/null || true
    return 0
  fi
  return 1
}

for conf in "$lab/pgbackrest/pgbackrest.conf" "$lab/pgbackrest-s3/pgbackrest.conf"; do
  if [ -f "$conf" ] && stanza_ready "$conf"; then
    pgbackrest --config="$conf" --stanza=ag_botkit archive-push "$path"
  fi
done

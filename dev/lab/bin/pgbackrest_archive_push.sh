#!/bin/sh
# The lab primary's archive_command (dev/lab/labctl.py): pgbackrest_archive_push.sh LAB_DIR %p %f
# (its name holds "pgbackrest": `pgbackrest check` refuses an archive_command without it)
#  1. keeps the gzipped copy in LAB_DIR/pg/wal_archive that the RDS stand-in replays (dev/lab/services/rds_standin.py);
#  2. pushes the segment to pgBackRest once the pgbackrest role has created the lab's stanza ag_botkit
#     (LAB_DIR/pgbackrest/pgbackrest.conf and the repository in LAB_DIR/pgbackrest/repo: playbooks/pgbackrest.yml).
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
conf="$lab/pgbackrest/pgbackrest.conf"
if [ -f "$conf" ] && [ -f "$lab/pgbackrest/repo/archive/ag_botkit/archive.info" ]; then
  exec pgbackrest --config="$conf" --stanza=ag_botkit archive-push "$path"
fi

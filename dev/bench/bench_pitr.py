#!/usr/bin/env python3
"""make bench, part 2 (issue 15): the restore side and the data lost, the plan's dump path (A) against our
physical point-in-time restore (B), in one run, with the bot trading into the database until the damage.

  backup side   A: pg_dump | gzip
                B: pgBackRest full backup, then incremental (playbooks/pgbackrest.yml)
  restore side  A: gunzip, DROP, CREATE, psql <, one count (DR_PLAN.md §2)
                B: ansible-playbook playbooks/db_restore.yml -e db_restore_target_time=T (restore into a new data
                   directory, replay to just before the damage, verify every table with counts and amcheck, switch)
  data lost     rows of orders and fills written before the damage (T) that are missing after each restore,
                and the seconds between each restore's last data and T

Wall seconds are printed beside CPU seconds (the live and the restored PostgreSQL's process trees plus every
child of this script), so that machines of different speed and load can be compared by the ratio. Not a test:
it prints figures and writes artifacts/bench_pitr.json. It switches the lab's cluster (the old data directory,
kept by the switch, is removed at the end); the lab stays usable.

  .venv/bin/python dev/bench/bench_pitr.py [--trade-seconds 20] [--keep-work]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_restore as br  # noqa: E402  (Lab, run, _proc_table, bench scale, seeding)

ROOT = br.ROOT
LIVE_DB = br.LIVE_DB
PLAN_DB = "ag_botkit_plan"
LOST_SQL = ("SELECT (SELECT count(*) FROM orders WHERE created_at < %(t)s) + "
            "(SELECT count(*) FROM fills WHERE filled_at < %(t)s)")


class TreeMeter:
    """CPU seconds of this script's children plus every PostgreSQL process tree seen during a phase: the live
    postmaster and the restored one (a daemon, not our child), found through their postmaster.pid files. A tree
    that ends (the restored cluster stopped by the switch) keeps its last reading."""

    def __init__(self, pidfiles: list[Path]):
        self.pidfiles = pidfiles
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.base = 0.0

    def _roots(self) -> list[int]:
        out = []
        for f in self.pidfiles:
            try:
                out.append(int(f.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def sample(self) -> float:
        table = br._proc_table()
        for root in self._roots():
            if root in table:
                total, _key = br.CpuMeter._tree(table, root, True)
                self.seen[root] = max(self.seen.get(root, 0.0), total)
        import resource
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        client, _ = br.CpuMeter._tree(table, os.getpid(), False)
        return sum(self.seen.values()) + ru.ru_utime + ru.ru_stime + client

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.1)

    def __enter__(self):
        self.base = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.cpu = round(self.sample() - self.base, 2)


def timed(meter_files, fn, *args, **kw):
    with TreeMeter(meter_files) as m:
        t0 = time.monotonic()
        result = fn(*args, **kw)
        wall = round(time.monotonic() - t0, 2)
    return wall, m.cpu, result


def kill_switch(lab, action: str) -> None:
    req = urllib.request.Request(f"{lab.env['LAB_MINIBOT_URL']}/api/kill-switch/{action}", method="POST",  # noqa: S310
                                 data=json.dumps({"reason": "bench"}).encode(),
                                 headers={"Authorization": "Bearer " + lab.secrets["kill_switch_token"],
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - the lab's loopback URL
        pass


def rows_before(lab, dbname: str, t) -> int:
    with lab.connect(dbname) as conn:
        return conn.execute(LOST_SQL, {"t": t}).fetchone()[0]


def playbook(lab, work: Path, log: Path, *args: str) -> None:
    with open(log, "a") as fh:
        fh.write(f"\n$ ansible-playbook {' '.join(args)}\n")
    br.run([str(br.VENV_BIN / "ansible-playbook"), "-i", "inventories/lab", *args], lab.ansible_env(work), log)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ROOT / ".lab")))
    ap.add_argument("--trade-seconds", type=float, default=float(os.environ.get("BENCH_PITR_TRADE", "20")),
                    help="seconds the bot trades between the last backup and the damage")
    ap.add_argument("--json", type=Path, default=ROOT / "artifacts" / "bench_pitr.json")
    ap.add_argument("--any-scale", action="store_true", help="do not reseed at bench scale (a quick smoke run)")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--verify-at-restore", action="store_true",
                    help="the restore runs pgbackrest verify itself (no verification recorded after the backup): "
                         "the behaviour before the recorded verification, for a before/after comparison")
    args = ap.parse_args(argv)
    lab = br.Lab(args.lab_dir)
    work = args.lab_dir / "bench_pitr"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "bench.log"
    pg_dir = args.lab_dir / "pg"
    files = [pg_dir / "data" / "postmaster.pid", pg_dir / "data.pitr" / "postmaster.pid"]
    env = lab.pg_env()

    if not args.any_scale and br.at_bench_scale(lab) is None:
        br.say("reseeding ag_botkit at bench scale (dev/lab/seed_db.py --reset --scale bench; ~1.5 min)")
        kill_switch(lab, "trigger")
        br.run([str(br.VENV_BIN / "python"), "dev/lab/seed_db.py", "--reset", "--scale", "bench"], env, log)
    size = br.counts_and_size(lab)
    br.say(f"database {size['size_mb']} MB, rows {size['counts']}")
    br.say("pgBackRest configured and archiving (playbooks/pgbackrest.yml, untimed)")
    playbook(lab, work, log, "playbooks/pgbackrest.yml")
    kill_switch(lab, "reset")
    time.sleep(2)

    # ---------------------------------------------------------------- backup side
    br.say("backup side: A pg_dump | gzip; B pgBackRest full, then incremental")
    gz = work / "backup.sql.gz"
    dump_start = datetime.now(UTC)
    a_cmd = f"set -o pipefail; pg_dump -U agbot {LIVE_DB} | gzip > {gz}"
    a_dump = timed(files, br.run, a_cmd, env, log, shell=True)  # noqa: S604 - the plan's pipeline, as written
    no_record = ["-e", "pgbackrest_verify_after_backup=false"] if args.verify_at_restore else []
    b_full = timed(files, playbook, lab, work, log, "playbooks/pgbackrest.yml", "-e", "pgbackrest_backup_type=full",
                   "-e", "pgbackrest_check=false", *no_record)
    b_incr = timed(files, playbook, lab, work, log, "playbooks/pgbackrest.yml", "-e", "pgbackrest_backup_type=incr",
                   "-e", "pgbackrest_check=false", *no_record)
    b_verify = None
    if not args.verify_at_restore:
        # the verify pgbackrest.yml starts in the background after each backup: wait until its record covers the
        # incremental set (a backup's cost, not the restore's), so that it does not compete with A or B for CPU
        label = sorted(p.name for p in (args.lab_dir / "pgbackrest" / "repo" / "backup" / "ag_botkit").glob("*I"))[-1]
        record = args.lab_dir / "pgbackrest" / "verified" / "ag_botkit.json"
        t0 = time.monotonic()
        while True:
            try:
                rec = json.loads(record.read_text())
                if label in rec.get("sets", {}):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() - t0 > 900:
                raise br.BenchError(f"no verification record covering {label} after 900 s ({record})")
            time.sleep(0.5)
        b_verify = (round(time.monotonic() - t0, 1), rec.get("seconds"), rec.get("ok"))
        br.say(f"background verify recorded for {label}: ok {rec.get('ok')}, its verify took {rec.get('seconds')} s")

    # ---------------------------------------------------------------- trading, then the damage at T
    br.say(f"the bot trades for {args.trade_seconds:.0f} s, then a bad deploy rewrites orders at T")
    time.sleep(args.trade_seconds)
    with lab.connect(LIVE_DB) as conn:
        t_damage = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.execute("UPDATE orders SET qty = qty * 2 WHERE id % 10 = 0")
    time.sleep(3)
    kill_switch(lab, "trigger")   # untimed on both sides: the plan halts the bot first too
    time.sleep(2)
    expected = rows_before(lab, LIVE_DB, t_damage)

    # ---------------------------------------------------------------- A: the plan's restore side
    br.say("A: gunzip, DROP, CREATE, psql <, count")
    plain = gz.with_suffix("")
    with lab.connect() as conn:
        br.drop_db(conn, PLAN_DB)
        conn.execute(f'CREATE DATABASE "{PLAN_DB}"')  # noqa: S608 - a constant name
    a_steps = [("gunzip", f"gunzip {gz}"),
               ("drop_create", f'psql -U agbot -d postgres -c "DROP DATABASE {PLAN_DB};" && '
                               f'psql -U agbot -d postgres -c "CREATE DATABASE {PLAN_DB};"'),
               ("restore", f"psql -q -U agbot -d {PLAN_DB} < {plain} > /dev/null 2>> {work}/a.stderr"),
               ("count", f'psql -U agbot -d {PLAN_DB} -c "SELECT count(*) FROM metrics;"')]  # noqa: S608
    a = {}
    for name, cmd in a_steps:
        a[name] = timed(files, br.run, cmd, env, log, shell=True)[:2]  # noqa: S604 - the plan's commands
    a_rows = rows_before(lab, PLAN_DB, t_damage)
    with lab.connect() as conn:
        br.drop_db(conn, PLAN_DB)
    plain.unlink(missing_ok=True)
    br.settle(lab)

    # ---------------------------------------------------------------- B: ours
    br.say("B: ansible-playbook playbooks/db_restore.yml, physical, to just before T, verified, switched")
    target = t_damage.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reports = work / "reports"
    b_wall, b_cpu, _ = timed(files, playbook, lab, work, log, "playbooks/db_restore.yml", "-e", json.dumps({
        "db_restore_path": "physical", "db_restore_target_time": target, "db_restore_confirm": LIVE_DB,
        "db_restore_kill_switch": False, "dr_incident_enabled": False, "dr_reports_dir": str(reports),
        **({"db_restore_physical_verify_record_dir": ""} if args.verify_at_restore else {})}))
    result = json.loads(sorted(reports.glob("db_restore-*.json"))[-1].read_text())
    # where B's wall time goes, task by task (the incident_timeline callback's record of the run)
    b_tasks = []
    for tl in sorted(reports.glob("*-db_restore/timeline.json"))[-1:]:
        doc = json.loads(tl.read_text())
        b_tasks = sorted(((round(t["seconds"], 2), t["name"]) for t in doc.get("tasks", []) if t.get("seconds")),
                         reverse=True)
        b_tasks = [{"seconds": sec, "task": name} for sec, name in b_tasks[:12]] + [
            {"seconds": round(doc["run"]["seconds"] - sum(t["seconds"] for t in doc.get("tasks", [])), 2),
             "task": "(outside tasks: start-up, plays, callbacks)"}, {"tasks_run": len(doc.get("tasks", []))}]
    b_rows = rows_before(lab, LIVE_DB, t_damage)
    replayed = (datetime.fromisoformat(result["replayed_to"].replace("Z", "+00:00"))
                if result.get("replayed_to") else None)

    # ---------------------------------------------------------------- figures
    a_wall = round(sum(v[0] for v in a.values()), 2)
    a_cpu = round(sum(v[1] for v in a.values()), 2)
    out = {
        "machine": {"cores": os.cpu_count(), "loadavg": br.loadavg()},
        "database": size,
        "backup": {"A_pg_dump_gzip": a_dump[:2], "B_full": b_full[:2], "B_incr": b_incr[:2],
                   "B_background_verify": b_verify, "A_bytes": None},
        "mode": "verify at restore" if args.verify_at_restore else "recorded verification",
        "restore": {"A": {"wall": a_wall, "cpu": a_cpu, "steps": a},
                    "B": {"wall": b_wall, "cpu": b_cpu, "steps": result.get("step_seconds"),
                          "module_seconds": result.get("restore_seconds"), "switch": result.get("switch_seconds"),
                          "verified_tables": result.get("verified_tables"),
                          "repository_verified_by": result.get("repository_verified_by"),
                          "slowest_tasks": b_tasks}},
        "ratio": round(a_wall / b_wall, 2) if b_wall else None,
        "data_lost": {
            "rows_before_T": expected,
            "A": {"rows": expected - a_rows, "seconds": round((t_damage - dump_start).total_seconds(), 1)},
            "B": {"rows": expected - b_rows,
                  "seconds": round((t_damage - replayed).total_seconds(), 3) if replayed else None},
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")

    print()
    print(f"database {size['size_mb']} MB; T = {target}; bot traded {args.trade_seconds:.0f} s after the last backup")
    print(f"{'':34} {'A wall':>8} {'A cpu':>7}   {'B wall':>8} {'B cpu':>7}")
    print(f"{'backup: A pg_dump|gzip / B full':34} {a_dump[0]:8.1f} {a_dump[1]:7.1f}   "
          f"{b_full[0]:8.1f} {b_full[1]:7.1f}")
    print(f"{'backup: B incremental':34} {'':8} {'':7}   {b_incr[0]:8.1f} {b_incr[1]:7.1f}")
    if b_verify:
        print(f"{'backup: B verify (background)':34} {'':8} {'':7}   {b_verify[1] or 0:8.1f}   "
              f"(waited {b_verify[0]} s after the incremental)")
    for name, (w, c) in a.items():
        print(f"{'restore A: ' + name:34} {w:8.1f} {c:7.1f}")
    for name, w in (result.get("step_seconds") or {}).items():
        print(f"{'restore B: ' + name:34} {'':8} {'':7}   {w:8.1f}")
    for name, w in (result.get("restore_seconds") or {}).items():
        print(f"{'  of which module: ' + name:34} {'':8} {'':7}   {w:8.1f}")
    for t in b_tasks[:6]:
        print(f"{'  B task: ' + t['task'][:24]:34} {'':8} {'':7}   {t['seconds']:8.1f}")
    print(f"mode: {out['mode']}")
    print(f"{'restore side, end to end':34} {a_wall:8.1f} {a_cpu:7.1f}   {b_wall:8.1f} {b_cpu:7.1f}   "
          f"B is {out['ratio']}x faster (target 5x)")
    dl = out["data_lost"]
    print(f"{'data lost (rows / seconds)':34} {dl['A']['rows']:>8} {dl['A']['seconds']:7.1f}   "
          f"{dl['B']['rows']:>8} {dl['B']['seconds'] if dl['B']['seconds'] is not None else '-':>7}"
          "   (target B < 60 s)")
    print(f"written to {args.json}")

    # ---------------------------------------------------------------- leave the lab as it was: trading, one data dir
    for old in pg_dir.glob("data.replaced-*"):
        shutil.rmtree(old, ignore_errors=True)
    kill_switch(lab, "reset")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except br.BenchError as exc:
        print(f"[bench] ERROR: {exc}", file=sys.stderr)
        sys.exit(2)

#!/usr/bin/env python3
"""Profile of the restore benchmark's parts: where B's time goes and which knobs move it.

    LAB_DIR=... .venv/bin/python dev/bench/profile.py [--reps N]      (writes artifacts/bench_profile.json)

Each variant runs --reps times, interleaved with the others, on ag_botkit with the bot halted (the kill switch is
triggered and restored as in bench_restore.py); medians of wall and CPU seconds (the lab's PostgreSQL plus the
commands, see bench_restore.CpuMeter). Measured:
  dump      pg_dump | gzip (A's), pg_dump -Fd -j2 at -Z0/-Z1/-Z6, the db_dump module with and without checksums,
            and the two checksum expressions of _manifest.py alone (md5 of the row text, hash_record_extended);
  restore   psql < plain SQL (A's), pg_restore -j1/-j2/-j3, -j2 with maintenance_work_mem=1GB, -j2 with
            max_parallel_maintenance_workers=0; the -j2 timeline (metrics COPY, then its index builds: the critical
            path) from pg_restore --verbose; ANALYZE;
  verify    db_integrity parts (counts, amcheck, checksums) as the module reports them;
  Ansible   `ansible localhost -m ping`, and backup.yml's wall time beyond its db_dump module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_restore import (  # noqa: E402
    LIVE_DB,
    ROOT,
    VENV_BIN,
    BenchError,
    CpuMeter,
    Lab,
    drop_db,
    postmaster_pid,
    say,
    settle,
)
from psycopg import sql  # noqa: E402

PROFILE_DB = "ag_botkit_profile"


def timed(meter: CpuMeter, fn) -> tuple[float, float, object]:
    c0, t0 = meter.total(), time.monotonic()
    out = fn()
    return time.monotonic() - t0, meter.total() - c0, out


def sh(cmd: str, env: dict, capture: bool = False) -> str:
    res = subprocess.run(cmd, shell=True, executable="/bin/bash", env=env, cwd=ROOT, check=False,  # noqa: S602
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError(f"{cmd} exited {res.returncode}: {res.stderr[-2000:]}")
    return res.stdout + res.stderr if capture else ""


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def ansible_module(lab: Lab, work: Path, module: str, args: dict) -> dict:
    env = lab.ansible_env(work)
    # connection through the modules' PG* fallbacks: no password on a command line
    env.update(PGHOST=lab.env["PGHOST"], PGPORT=lab.env["PGPORT"], PGUSER=lab.env["PGUSER"],
               PGPASSWORD=lab.secrets["db_password"])
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    res = subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-m", module, "-a", json.dumps(args),
                          "--tree", str(tree)], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    try:   # --tree writes the module's result as JSON, one file per host
        out = json.loads((tree / "localhost").read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"ansible -m {module} gave no result: {res.stdout[-1500:]} {res.stderr[-1500:]}") from exc
    if out.get("failed"):
        raise BenchError(f"ansible -m {module} failed: {out.get('msg')}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "2")))
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ROOT / ".lab")))
    ap.add_argument("--json", type=Path, default=ROOT / "artifacts" / "bench_profile.json")
    args = ap.parse_args(argv)
    lab = Lab(args.lab_dir.resolve())
    work = lab.lab_dir / "bench_profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = lab.pg_env()
    meter = CpuMeter(postmaster_pid(lab))
    meter.start()
    before = lab.bot_status()
    ks_env = lab.ansible_env(work)
    ks_env.update(AGBOT_KILL_SWITCH_URL=lab.env["LAB_MINIBOT_URL"],
                  AGBOT_KILL_SWITCH_TOKEN=lab.secrets["kill_switch_token"])
    ks = [str(VENV_BIN / "ansible"), "localhost", "-m", "agbotkit.dr.kill_switch", "-a"]
    subprocess.run([*ks, '{"state": "triggered", "reason": "bench profile"}'], env=ks_env, cwd=ROOT, check=True,
                   capture_output=True)
    results: dict = {}

    def record(group: str, name: str, wall: float, cpu: float, **extra) -> None:
        entry = results.setdefault(group, {}).setdefault(name, {"wall": [], "cpu": []})
        entry["wall"].append(round(wall, 3))
        entry["cpu"].append(round(cpu, 2))
        for k, v in extra.items():
            entry.setdefault(k, []).append(v)
        say(f"{group:8} {name:44} wall {wall:6.1f} s  cpu {cpu:6.1f} s  {extra if extra else ''}")

    try:
        settle(lab, vacuum=True)
        plain = work / "plain.sql"
        fd = work / "fd_z1"
        # ------------------------------------------------------------------ dump
        dumps = {
            "A: pg_dump | gzip -6": f"set -o pipefail; pg_dump {LIVE_DB} | gzip > {work}/a.sql.gz",
            "pg_dump -Fd -j2 -Z0": f"pg_dump -Fd -j2 -Z0 -f {work}/fd_z0 {LIVE_DB}",
            "pg_dump -Fd -j2 -Z1 (db_dump's)": f"pg_dump -Fd -j2 -Z1 -f {fd} {LIVE_DB}",
            "pg_dump -Fd -j2 -Z6": f"pg_dump -Fd -j2 -Z6 -f {work}/fd_z6 {LIVE_DB}",
        }
        out_of = {"A: pg_dump | gzip -6": work / "a.sql.gz", "pg_dump -Fd -j2 -Z0": work / "fd_z0",
                  "pg_dump -Fd -j2 -Z1 (db_dump's)": fd, "pg_dump -Fd -j2 -Z6": work / "fd_z6"}
        for _rep in range(args.reps):
            for name, cmd in dumps.items():
                if out_of[name].is_dir():
                    shutil.rmtree(out_of[name])
                out_of[name].unlink(missing_ok=True)
                settle(lab)
                wall, cpu, _ = timed(meter, lambda cmd=cmd: sh(cmd, env))
                record("dump", name, wall, cpu, mb=round(du(out_of[name]) / 2**20))
            for checksums in (False, True):
                shutil.rmtree(work / "mod", ignore_errors=True)
                settle(lab)
                wall, cpu, out = timed(meter, lambda c=checksums: ansible_module(lab, work, "agbotkit.dr.db_dump", {
                    "login_db": LIVE_DB, "backup_id": "p", "dest": str(work / "mod"), "jobs": 2, "compress": 1,
                    "checksums": c}))
                record("dump", f"db_dump module (ansible), checksums={checksums}", wall, cpu,
                       module_seconds=out.get("duration"))
            for algo, expr in (("md5 (sum64-md5-rowtext-v1)",
                                "coalesce(sum(('x' || substr(md5(r::text), 1, 16))::bit(64)::bigint), 0)"),
                               ("hash_record_extended of the whole row (close to sum64-typedhash-v2, the default)",
                                "coalesce(sum(hash_record_extended(r, 0)), 0)"),
                               ("count(*) + max(time) only", "count(*)")):
                settle(lab)
                q = " UNION ALL ".join(f"SELECT {expr}::text FROM {t} r"  # noqa: S608 - constants
                                       for t in ("metrics", "orders", "fills", "markets", "positions"))
                wall, cpu, _ = timed(meter, lambda q=q: sh(f'psql -qAt -d {LIVE_DB} -c "{q}"', env))
                record("checksum", f"one session, all tables: {algo}", wall, cpu)
        a_gz = work / "a.sql.gz"
        sh(f"gunzip -c {a_gz} > {plain}", env)
        # ------------------------------------------------------------------ restore
        restores = {
            "A: psql < plain SQL": f"psql -q -d {PROFILE_DB} < {plain} > /dev/null",
            "pg_restore -j1": f"pg_restore -j1 --no-owner -d {PROFILE_DB} {fd}",
            "pg_restore -j2 (db_load's)": f"pg_restore -j2 --no-owner -d {PROFILE_DB} {fd}",
            "pg_restore -j3": f"pg_restore -j3 --no-owner -d {PROFILE_DB} {fd}",
            "pg_restore -j2, maintenance_work_mem=1GB":
                f"PGOPTIONS='-c maintenance_work_mem=1GB' pg_restore -j2 --no-owner -d {PROFILE_DB} {fd}",
            "pg_restore -j2, max_parallel_maintenance_workers=0":
                f"PGOPTIONS='-c max_parallel_maintenance_workers=0' pg_restore -j2 --no-owner -d {PROFILE_DB} {fd}",
        }
        for _rep in range(args.reps):
            for name, cmd in restores.items():
                with lab.connect() as conn:
                    drop_db(conn, PROFILE_DB)
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PROFILE_DB)))
                settle(lab)
                wall, cpu, _ = timed(meter, lambda cmd=cmd: sh(cmd, env))
                record("restore", name, wall, cpu)
            # the -j2 timeline: when metrics' data and its indexes finish
            with lab.connect() as conn:
                drop_db(conn, PROFILE_DB)
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PROFILE_DB)))
            settle(lab)
            t0 = time.monotonic()
            proc = subprocess.Popen(["pg_restore", "-v", "-j2", "--no-owner", "-d", PROFILE_DB, str(fd)], env=env,
                                    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            marks = {}
            for line in proc.stderr:
                m = re.search(r"(launching|finished) item \d+ (TABLE DATA|INDEX|CONSTRAINT|FK CONSTRAINT) (.+)$", line)
                if m:
                    marks[f"{m.group(1)} {m.group(2)} {m.group(3).strip()}"] = round(time.monotonic() - t0, 2)
            proc.wait()
            total = time.monotonic() - t0
            copy = marks.get("finished TABLE DATA metrics", 0) - marks.get("launching TABLE DATA metrics", 0)
            idx = [v for k, v in marks.items() if k.startswith("finished INDEX metrics")]
            others = max((v for k, v in marks.items() if k.startswith("finished") and "metrics" not in k), default=0)
            record("restore", "pg_restore -j2 timeline", total, 0.0, metrics_copy=round(copy, 2),
                   metrics_indexes_after_copy=round(max(idx, default=0)
                                                    - marks.get("finished TABLE DATA metrics", 0), 2),
                   all_other_tables_done_at=others)
            settle(lab)
            wall, cpu, _ = timed(meter, lambda: sh(f'psql -d {PROFILE_DB} -qc "ANALYZE"', env))
            record("restore", "ANALYZE (after the restore)", wall, cpu)
            # ------------------------------------------------------------------ verify
            for label, checksums, amcheck in (("counts + max(time)", False, False), ("+ amcheck", False, True),
                                              ("+ amcheck + checksums", True, True)):
                settle(lab)
                wall, cpu, out = timed(meter, lambda c=checksums, a=amcheck: ansible_module(
                    lab, work, "agbotkit.dr.db_integrity", {"login_db": PROFILE_DB, "manifest_path":
                                                            str(work / "mod" / "p" / "manifest.json"),
                                                            "checksums": c, "amcheck": a, "amcheck_install": True,
                                                            "parallel": 2, "fail_on_mismatch": False}))
                record("verify", f"db_integrity (ansible): {label}", wall, cpu, module=out.get("elapsed_seconds"))
        # ------------------------------------------------------------------ Ansible
        for _rep in range(args.reps):
            wall, cpu, _ = timed(meter, lambda: subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-m", "ping"],
                                                              env=lab.ansible_env(work), cwd=ROOT, check=True,
                                                              capture_output=True))
            record("ansible", "ansible localhost -m ping", wall, cpu)
    finally:
        meter.stop()
        with lab.connect() as conn:
            drop_db(conn, PROFILE_DB)
        if before.get("state") == "trading":
            subprocess.run([*ks, '{"state": "reset", "reason": "bench profile finished"}'], env=ks_env, cwd=ROOT,
                           check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    summary = {g: {n: {k: (statistics.median(v) if k in ("wall", "cpu") else v) for k, v in e.items()}
                   for n, e in group.items()} for g, group in results.items()}
    doc = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "reps": args.reps, "cores": os.cpu_count(),
           "medians": summary, "runs": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    for g, group in summary.items():
        for n, e in group.items():
            extra = {k: v for k, v in e.items() if k not in ("wall", "cpu")}
            print(f"{g:8} {n:52} wall {e['wall']:6.1f} s  cpu {e['cpu']:6.1f} s  {extra if extra else ''}")
    say(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"[profile] ERROR: {exc}", file=sys.stderr)
        sys.exit(1)

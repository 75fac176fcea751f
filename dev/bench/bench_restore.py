#!/usr/bin/env python3
"""Benchmark: DR plan §2's manual restore (A) against agbotkit.dr's (B), on the same data, in one run.

    LAB_DIR=... .venv/bin/python dev/bench/bench_restore.py [--rounds N] [--keep-work]
    make bench                      # the same, after make lab-up (BENCH_ROUNDS=N to change the rounds)

A, the plan's path, exactly as DR_PLAN.md §2 / "Manual Backup Creation" run it, against the lab:
    pg_dump -U agbot ag_botkit | gzip > backup-*.sql.gz ; gunzip backup-*.sql.gz ;
    psql -c "DROP DATABASE ...;" ; psql -c "CREATE DATABASE ...;" ; psql -d ... < backup-*.sql ;
    psql -c "SELECT count(*) FROM metrics;"
  run on ag_botkit_plan, a copy of ag_botkit made (untimed) with CREATE DATABASE ... TEMPLATE ag_botkit, so the
  lab database itself is never dropped by A. kubectl exec is left out (the lab's PostgreSQL is local).
B, ours, as Ansible runs it:
    dump    ansible-playbook playbooks/backup.yml (db_dump: -Fd, jobs, compress, manifest with checksums read in
            the dump's snapshot, sha256 of every artifact) with S3 upload, Kubernetes and Terraform switched off by
            the role's own variables;
    restore/verify/swap  ansible-playbook dev/bench/b_restore.yml: db_restore.yml's task files load.yml (db_load:
            sha256 check, parallel pg_restore into a new database, ANALYZE), verify.yml (db_integrity: every table,
            counts, max(time), schema hash, amcheck heap + B-tree; checksums off) and swap.yml (db_swap), with the
            role's defaults and -e db_restore_confirm=ag_botkit. S3 download is excluded, as on A's side.
    then, separately, verify.yml again WITH checksums (on the swapped-in database, the same data).
The bot is halted first (agbotkit.dr.kill_switch, halt confirmed in the database) and its state is restored at
the end. Rounds alternate the order (A first, then B first). Results: a table on stdout and artifacts/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
LIVE_DB = "ag_botkit"
PLAN_DB = "ag_botkit_plan"          # A's copy of the live database
BENCH_SCALE = {"metrics": 5_000_000, "orders": 1_000_000, "fills": 1_000_000}
TABLES = ("markets", "orders", "fills", "positions", "metrics")
PHASES = ("dump", "gunzip", "drop_create", "restore", "verify", "swap", "ansible")
PHASE_LABEL = {
    "dump": "backup (dump)",
    "gunzip": "decompress",
    "drop_create": "DROP + CREATE DATABASE",
    "restore": "restore",
    "verify": "verify",
    "swap": "swap in",
    "ansible": "Ansible start-up/teardown",
}


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


class BenchError(Exception):
    pass


# ----------------------------------------------------------------------------------------------- lab


class Lab:
    def __init__(self, lab_dir: Path):
        self.lab_dir = lab_dir
        try:
            self.doc = json.loads((lab_dir / "lab.json").read_text())
        except OSError as exc:
            raise BenchError(f"no lab at {lab_dir} ({exc}): run `make lab-up` (with the same LAB_DIR)") from exc
        self.env = self.doc["env"]
        self.secrets = json.loads(Path(self.doc["secrets_file"]).read_text())
        self.pg_bin = Path(self.env.get("LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))

    def pg_env(self) -> dict:
        """Environment for A's client tools: PG* of the lab (the plan's psql -U agbot inside the pod)."""
        env = dict(os.environ)
        for k in ("PGHOST", "PGPORT", "PGUSER"):
            env[k] = self.env[k]
        env["PGPASSWORD"] = self.secrets["db_password"]
        env.pop("PGDATABASE", None)
        env["PATH"] = f"{self.pg_bin}:{env.get('PATH', '')}"
        return env

    def ansible_env(self, work: Path) -> dict:
        """Environment for B: no PG* at all, so the modules connect with what the inventory gives them."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LAB_DIR=str(self.lab_dir), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_NOCOLOR="1", INCIDENT_TIMELINE_REPORTS_DIR=str(work / "reports"),
                   PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        return env

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=self.env["PGHOST"], port=int(self.env["PGPORT"]), user=self.env["PGUSER"],
                               password=self.secrets["db_password"], dbname=dbname, autocommit=True,
                               connect_timeout=10, application_name="agbotkit.dr bench")

    def bot_status(self) -> dict:
        req = urllib.request.Request(self.env["LAB_MINIBOT_URL"] + "/api/kill-switch",  # noqa: S310 - lab URL
                                     headers={"Authorization": "Bearer " + self.secrets["kill_switch_token"]})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the lab's loopback URL
            return json.loads(resp.read())


def run(argv, env, log: Path | None = None, stdin=None, shell: bool = False) -> float:
    """Run to completion; seconds of wall time. Output to `log`; failure raises with its tail."""
    t0 = time.monotonic()
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        res = subprocess.run(argv, env=env, cwd=ROOT, stdin=stdin, stdout=out,  # noqa: S602 - the plan's pipelines
                             stderr=subprocess.STDOUT if log else subprocess.PIPE, shell=shell,
                             executable="/bin/bash" if shell else None, check=False)
    finally:
        if log:
            out.close()
    seconds = time.monotonic() - t0
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else (res.stderr or b"").decode()[-3000:]
        raise BenchError(f"{argv if not shell else argv!r} exited {res.returncode}:\n{tail}")
    return seconds


def ansible(args: list[str], env: dict, log: Path) -> float:
    with open(log, "a") as fh:
        fh.write(f"\n$ ansible {' '.join(args)}\n")
    return run([str(VENV_BIN / "ansible"), "localhost", *args], env, log)


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, CPU seconds of the process, CPU seconds of its reaped children)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the comm field: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        out[int(entry.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK)
    return out


class CpuMeter:
    """CPU seconds spent by the lab's PostgreSQL (postmaster, backends, parallel workers) plus this process's
    children (pg_dump, gzip, psql, ansible and its modules), counting exited processes through their parents'
    reaped-children times. Other work on the machine is not counted, so CPU seconds stay comparable when the
    wall times are disturbed by other load. A background thread samples every 0.2 s, so that CPU can be split
    at the time stamps the Ansible role records itself."""

    def __init__(self, postmaster: int | None):
        self.postmaster = postmaster
        self.samples: list[tuple[float, float, float]] = []   # (epoch, server cpu, client cpu)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def read(self) -> tuple[float, float]:
        """(server, client) CPU seconds. A process reaped while /proc is being read would be missed, so /proc is
        read twice and again until no process of either tree was reaped in between (same processes, same reaped
        times, same rusage of our own children)."""
        for _attempt in range(20):
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            first = _proc_table()
            second = _proc_table()
            ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            server, key_s1 = self._tree(first, self.postmaster, True)
            client, key_c1 = self._tree(first, os.getpid(), False)
            _s, key_s2 = self._tree(second, self.postmaster, True)
            _c, key_c2 = self._tree(second, os.getpid(), False)
            if (ru1.ru_utime, ru1.ru_stime) == (ru2.ru_utime, ru2.ru_stime) and key_s1 == key_s2 and key_c1 == key_c2:
                break
        return server, ru1.ru_utime + ru1.ru_stime + client

    @staticmethod
    def _tree(table: dict, root: int | None, include_root: bool) -> tuple[float, frozenset]:
        """CPU of root's tree, and a key (pid, reaped children's CPU) that changes when any process of it reaps
        a child or leaves."""
        if root is None:
            return 0.0, frozenset()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _own, _reaped) in table.items():
            children.setdefault(ppid, []).append(pid)
        total, stack, key = 0.0, [root], set()
        while stack:
            pid = stack.pop()
            _ppid, own, reaped = table.get(pid, (0, 0.0, 0.0))
            key.add((pid, reaped))
            if pid != root or include_root:
                total += own + reaped
            stack.extend(children.get(pid, []))
        return total, frozenset(key)

    def total(self) -> float:
        return sum(self.read())

    def _loop(self) -> None:
        while not self._stop.is_set():
            server, client = self.read()
            self.samples.append((time.time(), server, client))
            self._stop.wait(0.2)

    def start(self) -> None:
        if self.postmaster:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def at(self, epoch: float) -> float:
        """Total CPU at a wall-clock time (nearest sample at or before it)."""
        best = None
        for t, server, client in self.samples:
            if t <= epoch:
                best = server + client
            else:
                break
        return best if best is not None else (self.samples[0][1] + self.samples[0][2] if self.samples else 0.0)


def postmaster_pid(lab) -> int | None:
    with lab.connect() as conn:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'").fetchone()
    if not row:
        return None
    return _proc_table().get(row[0], (None, 0, 0))[0]


# ------------------------------------------------------------------------------------------- database


def db_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_db(conn, name: str) -> None:
    if name == LIVE_DB:
        raise BenchError("refusing to drop the live database")
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def counts_and_size(lab: Lab) -> dict:
    with lab.connect(LIVE_DB) as conn:
        present = {r[0] for r in conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                              "c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")}
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in TABLES if t in present}
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"counts": counts, "size_bytes": size, "size_mb": round(size / 2**20, 1)}


def at_bench_scale(lab: Lab) -> dict | None:
    with lab.connect() as conn:
        if not db_exists(conn, LIVE_DB):
            return None
    info = counts_and_size(lab)
    if all(info["counts"].get(t, 0) >= n for t, n in BENCH_SCALE.items()):
        return info
    return None


def settle(lab: Lab, vacuum: bool = False, timeout: float = 300.0) -> float:
    """Untimed, between paths: optionally VACUUM ag_botkit (a freshly restored database is otherwise vacuumed by
    autovacuum a little later, during whatever runs next), wait until no autovacuum worker is busy, CHECKPOINT.
    Returns the seconds spent."""
    t0 = time.monotonic()
    if vacuum:
        with lab.connect(LIVE_DB) as conn:
            conn.execute("VACUUM (ANALYZE)")
    quiet = 0
    with lab.connect() as conn:
        while time.monotonic() - t0 < timeout and quiet < 3:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                                "AND state = 'active'").fetchone()[0]
            quiet = 0 if busy else quiet + 1
            time.sleep(0.5)
        conn.execute("CHECKPOINT")
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------ the paths


def path_a(lab: Lab, work: Path, log: Path, meter: CpuMeter) -> dict:
    """The plan's manual path, on a copy of the live database."""
    env = lab.pg_env()
    adir = work / "plan"
    shutil.rmtree(adir, ignore_errors=True)
    adir.mkdir(parents=True)
    gz = adir / f"backup-{datetime.now(UTC):%Y%m%d-%H%M%S}.sql.gz"
    plain = gz.with_suffix("")
    with lab.connect() as conn:   # untimed: the copy A may drop
        drop_db(conn, PLAN_DB)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(PLAN_DB), sql.Identifier(LIVE_DB)))
    settle(lab)
    q = PLAN_DB
    steps = [   # DR_PLAN.md, less `kubectl exec -i timescaledb-0 -n ag-botkit --`
        ("dump", f"set -o pipefail; pg_dump -U agbot {q} | gzip > {gz}"),
        ("gunzip", f"gunzip {gz}"),
        ("drop_create", f'psql -U agbot -d postgres -c "DROP DATABASE {q};"'),
        ("drop_create", f'psql -U agbot -d postgres -c "CREATE DATABASE {q};"'),
        ("restore", f"psql -U agbot -d {q} < {plain}"),
        ("verify", f'psql -U agbot -d {q} -c "SELECT count(*) FROM metrics;"'),  # noqa: S608 - constant
    ]
    t: dict = {p: 0.0 for p in PHASES}
    cpu: dict = {p: 0.0 for p in PHASES}
    la = [loadavg()]
    err_log = adir / "restore.stderr"
    verify_out = ""
    for phase, cmd in steps:
        with open(log, "a") as fh:
            fh.write(f"\n$ {cmd}\n")
        c0, t0 = meter.total(), time.monotonic()
        if phase == "restore":   # psql's stderr kept apart: the plan does not look at it, the bench counts ERRORs
            with open(err_log, "wb") as ferr:
                res = subprocess.run(cmd, shell=True, executable="/bin/bash", env=env,  # noqa: S602
                                     stdout=subprocess.DEVNULL, stderr=ferr, check=False)
            if res.returncode != 0:
                raise BenchError(f"A: {cmd} exited {res.returncode}: {err_log.read_text()[-2000:]}")
        elif phase == "verify":
            res = subprocess.run(cmd, shell=True, executable="/bin/bash", env=env,  # noqa: S602
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise BenchError(f"A: {cmd} failed: {res.stderr}")
            verify_out = res.stdout
        else:
            run(cmd, env, log, shell=True)  # noqa: S604 - the plan's commands, as written there
        t[phase] += time.monotonic() - t0
        cpu[phase] += meter.total() - c0
    la.append(loadavg())
    restore_errors = [ln for ln in err_log.read_text(errors="replace").splitlines() if "ERROR" in ln]
    m = re.search(r"^\s*(\d+)\s*$", verify_out, re.M)
    dump_bytes = plain.stat().st_size
    with lab.connect() as conn:
        drop_db(conn, PLAN_DB)
    shutil.rmtree(adir, ignore_errors=True)
    t["total"] = sum(t[p] for p in PHASES)
    cpu["total"] = sum(cpu[p] for p in PHASES)
    return {"seconds": {k: round(v, 3) for k, v in t.items()}, "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "metrics_count": int(m.group(1)) if m else None,
            "restore_errors": restore_errors[:5], "restore_error_count": len(restore_errors),
            "plain_sql_bytes": dump_bytes, "commands": [c for _p, c in steps], "loadavg": la}


def playbook(args: list[str], env: dict, log: Path) -> float:
    with open(log, "a") as fh:
        fh.write(f"\n$ ansible-playbook {' '.join(args)}\n")
    return run([str(VENV_BIN / "ansible-playbook"), *args], env, log)


def bench_playbook(args: list[str], env: dict, log: Path) -> tuple[float, dict]:
    """Run dev/bench/b_restore.yml; (wall seconds, the dict its last task printed after BENCH_RESULT)."""
    start = log.stat().st_size if log.exists() else 0
    wall = playbook(args, dict(env, ANSIBLE_CALLBACK_RESULT_FORMAT="json"), log)
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    found = re.findall(r'^\s*"msg": ("BENCH_RESULT .*")\s*$', text, flags=re.M)
    if not found:
        raise BenchError(f"no BENCH_RESULT line in the output of {args[0]}; see {log}")
    return wall, json.loads(json.loads(found[-1])[len("BENCH_RESULT "):])


def path_b(lab: Lab, work: Path, log: Path, meter: CpuMeter, round_no: int) -> dict:
    """backup.yml's dump, then db_restore.yml's load/verify/swap task files; then verify with checksums."""
    env = lab.ansible_env(work)
    backups = work / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    backup_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    target = f"{LIVE_DB}_restore_{backup_id.lower()}"
    settle(lab)
    t: dict = {p: 0.0 for p in PHASES}
    cpu: dict = {p: 0.0 for p in PHASES}
    la = [loadavg()]
    # dump: the real playbook; S3, Kubernetes and Terraform off through the role's own variables
    c0 = meter.total()
    t["dump"] = playbook(["playbooks/backup.yml", "-e", "db_backup_upload=false", "-e", "db_backup_k8s_resources=false",
                          "-e", "db_backup_terraform_state=false", "-e", f"db_backup_id={backup_id}",
                          "-e", f"db_backup_dir={backups}"], env, log)
    cpu["dump"] = meter.total() - c0
    manifest = json.loads((backups / backup_id / "manifest.json").read_text())
    # restore, verify (counts + amcheck), swap: one run, split at the role's own step clock
    c0 = meter.total()
    try:
        wall, res = bench_playbook(["dev/bench/b_restore.yml", "-e", f"bench_backup_id={backup_id}",
                                    "-e", f"bench_work_dir={backups}", "-e", "db_restore_checksums=false",
                                    "-e", f"db_restore_confirm={LIVE_DB}"], env, log)
    except BenchError:
        with lab.connect() as conn:   # a failed restore is not swapped in: drop what it created
            if db_exists(conn, target):
                drop_db(conn, target)
        raise
    c_run = meter.total() - c0
    st = res["t"]
    t["restore"] = st["verify"] - st["restore"]
    t["verify"] = st["swap"] - st["verify"]
    t["swap"] = res["end"] - st["swap"]
    t["ansible"] = wall - (res["end"] - st["restore"])
    cpu["restore"] = meter.at(st["verify"]) - meter.at(st["restore"])
    cpu["verify"] = meter.at(st["swap"]) - meter.at(st["verify"])
    cpu["swap"] = meter.at(res["end"]) - meter.at(st["swap"])
    cpu["ansible"] = c_run - cpu["restore"] - cpu["verify"] - cpu["swap"]
    la.append(loadavg())
    if not res["verify"]["ok"] or not res["swap"]["swapped"]:
        raise BenchError(f"B: restore not verified or not swapped: {json.dumps(res)[:2000]}")
    # untimed: the swapped-in database's first VACUUM, so that autovacuum does not run into what comes next
    settle(lab, vacuum=True)
    # verify WITH checksums: the same task file, on the swapped-in database (the same restored data)
    cs_wall, cs = bench_playbook(["dev/bench/b_restore.yml", "-e", f"bench_backup_id={backup_id}",
                                  "-e", f"bench_work_dir={backups}", "-e", '{"bench_phases": ["verify"]}',
                                  "-e", f"bench_target={LIVE_DB}", "-e", "db_restore_checksums=true"], env, log)
    if not cs["verify"]["ok"]:
        raise BenchError(f"B: verify with checksums failed: {json.dumps(cs['verify'])[:2000]}")
    verify_cs = cs["end"] - cs["t"]["verify"]
    verify_cs_cpu = meter.at(cs["end"]) - meter.at(cs["t"]["verify"])
    # the quarantined database holds exactly what was just verified into ag_botkit: drop it
    quarantine = res["swap"]["quarantine_db"]
    with lab.connect() as conn:
        drop_db(conn, quarantine)
    shutil.rmtree(backups / backup_id, ignore_errors=True)
    t["total"] = sum(t[p] for p in PHASES)
    cpu["total"] = sum(cpu[p] for p in PHASES)
    t_cs = dict(t, verify=verify_cs)
    t_cs["total"] = sum(t_cs[p] for p in PHASES)
    cpu_cs = dict(cpu, verify=verify_cs_cpu)
    cpu_cs["total"] = sum(cpu_cs[p] for p in PHASES)
    return {"seconds": {k: round(v, 3) for k, v in t.items()}, "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "seconds_with_checksums": {k: round(v, 3) for k, v in t_cs.items()},
            "cpu_seconds_with_checksums": {k: round(v, 2) for k, v in cpu_cs.items()},
            "backup_id": backup_id, "restore_playbook_wall": round(wall, 3), "checksum_verify_wall": round(cs_wall, 3),
            "module_seconds": {"db_dump": manifest.get("duration"), "db_load": res["load"]["duration"],
                               "db_integrity": res["verify"]["elapsed_seconds"],
                               "db_integrity_checksums": cs["verify"]["elapsed_seconds"]},
            "dump": {"bytes": sum(a["bytes"] for a in manifest["artifacts"].values()),
                     "artifacts": len(manifest["artifacts"]), "compress": manifest["backup"]["compress"],
                     "tables": len(manifest["tables"]), "checksum_algorithm": manifest.get("checksum_algorithm")},
            "verify": res["verify"], "verify_checksums": cs["verify"], "quarantine_dropped": quarantine,
            "loadavg": la}


# --------------------------------------------------------------------------------------------- report


def med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def fmt(v, width: int = 7) -> str:
    if v is None or v == 0:
        return "-"
    return f"{v:.1f} s" if width >= 7 else f"{v:.1f}"


def report(rounds: list[dict], data: dict) -> dict:
    def medians(path: str, key: str) -> dict:
        runs = [r[path][key] for r in rounds]
        return {p: med([x[p] for x in runs]) for p in (*PHASES, "total")}

    a, b, bc = medians("A", "seconds"), medians("B", "seconds"), medians("B", "seconds_with_checksums")
    ac, bcpu = medians("A", "cpu_seconds"), medians("B", "cpu_seconds")
    bccpu = medians("B", "cpu_seconds_with_checksums")
    last = rounds[-1]
    vb, vcs, dump = last["B"]["verify"], last["B"]["verify_checksums"], last["B"]["dump"]
    a_what = {
        "dump": "pg_dump | gzip (plain SQL, gzip -6)",
        "gunzip": "gunzip",
        "drop_create": "DROP DATABASE; CREATE DATABASE",
        "restore": "psql < file (one session)",
        "verify": "SELECT count(*) FROM metrics",
    }
    b_what = {
        "dump": f"backup.yml: db_dump -Fd -j, Z{dump['compress']}, manifest + checksums, sha256",
        "restore": "db_load: sha256, new db, pg_restore -j, ANALYZE",
        "verify": f"db_integrity: {vb['tables']} tables' counts, amcheck of {vb['amcheck_relations']} relations",
        "swap": "db_swap: live -> quarantine, restored -> live",
        "ansible": "restore playbook start-up/teardown",
    }
    ratio = round(a["total"] / b["total"], 2) if b["total"] else None
    ratio_cs = round(a["total"] / bc["total"], 2) if bc["total"] else None
    cpu_ratio = round(ac["total"] / bcpu["total"], 2) if bcpu["total"] else None
    hdr = (f"| {'phase':<26} | {'A wall':>7} | {'B wall':>7} | {'A cpu':>6} | {'B cpu':>6} | "
           f"{'A: the plan, by hand':<38} | B: agbotkit.dr")
    lines = [
        "",
        f"Restore benchmark, {data['size_mb']:.0f} MB database ("
        + ", ".join(f"{k} {v:,}" for k, v in data["counts"].items())
        + f"); {len(rounds)} round(s), medians in seconds; {os.cpu_count()} cores; S3 excluded on both sides",
        "",
        hdr,
        "|" + "|".join("-" * n for n in (28, 9, 9, 8, 8, 40, 56)),
    ]

    def row(label, av, bv, acv, bcv, aw="", bw=""):
        return (f"| {label:<26} | {fmt(av):>7} | {fmt(bv):>7} | {fmt(acv, 6):>6} | {fmt(bcv, 6):>6} | {aw:<38} | {bw}")

    for p in PHASES:
        lines.append(row(PHASE_LABEL[p], a[p], b[p], ac[p], bcpu[p], a_what.get(p, "-"), b_what.get(p, "-")))
    lines += [
        row("TOTAL end to end", a["total"], b["total"], ac["total"], bcpu["total"]),
        f"| {'ratio A/B':<26} | {'':>7} | {str(ratio) + 'x':>7} | {'':>6} | {str(cpu_ratio) + 'x':>6} | "
        f"target >= 1.6x end to end: {'MET' if ratio and ratio >= 1.6 else 'NOT met'}",
        row("B verify WITH checksums", None, bc["verify"], None, bccpu["verify"], "",
            f"db_integrity as above + row checksums of {vcs['checksums_ok']} tables"),
        row("B total WITH checksums", a["total"], bc["total"], ac["total"], bccpu["total"], "",
            f"ratio A/B {ratio_cs}x"),
        "",
        f"A verified: one count of one table (metrics = {last['A']['metrics_count']:,}); psql printed "
        f"{last['A']['restore_error_count']} ERROR line(s), which the plan does not look at.",
        f"B verified: all {vb['tables']} tables present with the manifest's row counts ({vb['rows']:,} rows), "
        f"max(time), schema hash and extensions; amcheck {vb['amcheck_ok']}/{vb['amcheck_relations']} relations ok "
        f"(heap + B-tree); with checksums also {vcs['checksums_ok']}/{vcs['tables']} tables' row checksums equal "
        "to the manifest's, which was read in the dump's own snapshot.",
        f"Backup size: B {dump['bytes'] / 2**20:.0f} MB ({dump['artifacts']} files, sha256 each); A "
        f"{last['A']['plain_sql_bytes'] / 2**20:.0f} MB of SQL once gunzipped.",
        "cpu = CPU seconds of the lab's PostgreSQL plus the commands run (exited processes included), not other load.",
    ]
    if len(rounds) > 1:
        lines.append("per round, A/B wall: " + ", ".join(
            f"{r['A']['seconds']['total']:.1f}/{r['B']['seconds']['total']:.1f} s ({r['order']})" for r in rounds))
    busy = max(max(r["A"]["loadavg"] + r["B"]["loadavg"]) for r in rounds)
    if busy > (os.cpu_count() or 1):
        lines.append(f"NOTE: the load average reached {busy:.1f} on {os.cpu_count()} cores: other work shared the "
                     "CPUs, so wall times are noisy; the cpu columns do not depend on other load.")
    print("\n".join(lines), flush=True)
    return {"median_seconds": {"A": a, "B": b, "B_with_checksums": bc},
            "median_cpu_seconds": {"A": ac, "B": bcpu, "B_with_checksums": bccpu},
            "ratio": ratio, "ratio_with_checksums": ratio_cs, "cpu_ratio": cpu_ratio, "target_ratio": 1.6,
            "target_met": bool(ratio and ratio >= 1.6), "table": lines}


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ROOT / ".lab")))
    ap.add_argument("--work", type=Path, help="scratch folder (default <lab-dir>/bench)")
    ap.add_argument("--json", type=Path, default=ROOT / "artifacts" / "bench.json")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the last backup and plain SQL file in the scratch folder (the log is always kept)")
    args = ap.parse_args(argv)
    lab = Lab(args.lab_dir.resolve())
    work = (args.work or lab.lab_dir / "bench").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "bench.log"
    for tool in ("pg_dump", "psql"):
        if not (lab.pg_bin / tool).exists():
            raise BenchError(f"{lab.pg_bin / tool} is missing: make setup")
    for tool in ("gzip", "gunzip"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} is missing: apt-get install gzip")
    say(f"lab {lab.lab_dir} (PostgreSQL on {lab.env['PGHOST']}:{lab.env['PGPORT']}); log {log}")

    with lab.connect() as conn:   # leftovers of an interrupted run
        drop_db(conn, PLAN_DB)
    meter = CpuMeter(postmaster_pid(lab))
    meter.start()
    before = lab.bot_status()
    say(f"bot is {before['state']}; halting it (agbotkit.dr.kill_switch, halt confirmed in the database)")
    ks_env = lab.ansible_env(work)
    ks_env.update(AGBOT_KILL_SWITCH_URL=lab.env["LAB_MINIBOT_URL"],
                  AGBOT_KILL_SWITCH_TOKEN=lab.secrets["kill_switch_token"],
                  PGHOST=lab.env["PGHOST"], PGPORT=lab.env["PGPORT"], PGUSER=lab.env["PGUSER"],
                  PGPASSWORD=lab.secrets["db_password"], PGDATABASE=LIVE_DB)
    ansible(["-m", "agbotkit.dr.kill_switch", "-a",
             json.dumps({"state": "triggered", "reason": "bench: data must be stable", "confirm_db": {}})],
            ks_env, log)
    result: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "rounds": []}
    try:
        info = at_bench_scale(lab)
        if info is None:
            say("reseeding ag_botkit at bench scale (dev/lab/seed_db.py --reset --scale bench; ~1.5 min)")
            run([str(VENV_BIN / "python"), "dev/lab/seed_db.py", "--reset", "--scale", "bench"], lab.pg_env(), log)
            info = at_bench_scale(lab)
            if info is None:
                raise BenchError("the database is still not at bench scale after seeding; see " + str(log))
        else:
            say("ag_botkit is at bench scale already")
        say(f"VACUUM ag_botkit and wait for autovacuum to finish (untimed): {settle(lab, vacuum=True):.1f} s")
        say(f"database ag_botkit: {info['size_mb']:.1f} MB; rows: "
            + ", ".join(f"{k} {v:,}" for k, v in info["counts"].items()))
        with lab.connect() as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
        result.update(database=info, server_version=server, cores=os.cpu_count(), machine=platform.machine(),
                      memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                      lab_dir=str(lab.lab_dir), s3="excluded on both sides",
                      a_database=f"{PLAN_DB} (CREATE DATABASE {PLAN_DB} TEMPLATE {LIVE_DB}, untimed)")
        for i in range(args.rounds):
            order = "AB" if i % 2 == 0 else "BA"
            say(f"round {i + 1}/{args.rounds} ({'A then B' if order == 'AB' else 'B then A'})")
            rnd = {"order": order}
            for which in order:
                if which == "A":
                    rnd["A"] = path_a(lab, work, log, meter)
                    say(f"  A: {rnd['A']['seconds']['total']:.1f} s "
                        + " ".join(f"{p}={v:.1f}" for p, v in rnd["A"]["seconds"].items() if v and p != "total"))
                else:
                    rnd["B"] = path_b(lab, work, log, meter, i + 1)
                    say(f"  B: {rnd['B']['seconds']['total']:.1f} s "
                        + " ".join(f"{p}={v:.1f}" for p, v in rnd["B"]["seconds"].items() if v and p != "total")
                        + f" (verify with checksums {rnd['B']['seconds_with_checksums']['verify']:.1f})")
            result["rounds"].append(rnd)
        result["summary"] = report(result["rounds"], info)
        after = counts_and_size(lab)
        result["database_after"] = after
        if after["counts"] != info["counts"]:
            raise BenchError(f"ag_botkit's row counts changed: {info['counts']} -> {after['counts']}")
        say(f"ag_botkit after the bench: {after['size_mb']:.1f} MB, the same row counts (restored by B, verified)")
    finally:
        meter.stop()
        if before.get("state") == "trading":
            say("resetting the kill switch (the bot was trading before the bench)")
            ansible(["-m", "agbotkit.dr.kill_switch", "-a",
                     json.dumps({"state": "reset", "reason": "bench finished", "confirm_db": {}})], ks_env, log)
        with lab.connect() as conn:
            drop_db(conn, PLAN_DB)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"results: {args.json}")
        if not args.keep_work:
            for sub in ("backups", "plan"):
                shutil.rmtree(work / sub, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"[bench] ERROR: {exc}", file=sys.stderr)
        sys.exit(1)

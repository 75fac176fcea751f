#!/usr/bin/env python3
"""labctl: bring the local DR lab up, down, report its status, flip faults.

Usage:
    labctl.py up | down | status | env
    labctl.py fault list
    labctl.py fault on NAME [--options JSON]
    labctl.py fault off NAME | --all

Every service is a child process tracked by PID in .lab/pids; ports are fixed
defaults that LAB_*_PORT environment variables move (docs/lab.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev" / "lab" / "services"))
import lab_tls  # noqa: E402  (the lab's CA and the AWS endpoint's TLS certificate)
import rds_standin  # noqa: E402  (the RDS stand-in's cluster folders)

LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
VENV_PY = ROOT / ".venv" / "bin" / "python"
PG_BIN = Path(os.environ.get("LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
DB_USER = "agbot"
DB_NAME = "ag_botkit"
ARCHIVE_TIMEOUT = int(os.environ.get("LAB_ARCHIVE_TIMEOUT", "10"))  # seconds: the lab's PITR granularity (RPO)

PORTS = {
    "pg": ("LAB_PG_PORT", 55432),
    "aws": ("LAB_AWS_PORT", 55000),
    "aws_tls": ("LAB_AWS_TLS_PORT", 55443),  # the same AWS server over HTTPS, certificate from the lab CA
    "k8s": ("LAB_K8S_PORT", 56443),
    "minibot": ("LAB_MINIBOT_PORT", 59091),
    "rtds": ("LAB_RTDS_PORT", 58765),
    "sink": ("LAB_SINK_PORT", 58080),
    "smtp": ("LAB_SMTP_PORT", 58025),
}

SECRET_KEYS = (
    "db_password", "kill_switch_token", "exchange_api_key", "exchange_api_secret",
    "slack_webhook_token", "pagerduty_routing_key", "statuspage_api_key",
)


class LabError(Exception):
    """An error with a message that says what to do next."""


def port(name: str) -> int:
    var, default = PORTS[name]
    value = os.environ.get(var, str(default))
    try:
        number = int(value)
    except ValueError as exc:
        raise LabError(f"{var}={value!r} is not a port number") from exc
    if not 1024 <= number <= 65535:
        # e.g. a lane offset added to ports already moved by a LAB_*_PORT left exported from another lab
        raise LabError(f"{var}={number} is not a port from 1024 to 65535: check the LAB_*_PORT variables this shell "
                       "exports (`env | grep ^LAB_`)")
    return number


def say(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


# --------------------------------------------------------------------------- services


@dataclass
class Service:
    name: str
    ports: tuple[str, ...]
    ready_url: str

    def argv(self) -> list[str]:
        script = ROOT / "dev" / "lab" / "services" / f"{self.script}.py"
        args = [str(VENV_PY), str(script), "--port", str(port(self.ports[0])), "--lab-dir", str(LAB_DIR)]
        if self.name == "sinks":
            args += ["--smtp-port", str(port("smtp"))]
        if self.name == "aws":
            tls = lab_tls.paths(LAB_DIR)
            args += ["--tls-port", str(port("aws_tls")), "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])]
        return args

    @property
    def script(self) -> str:
        return {"aws": "aws_server", "k8s": "k8s_emulator"}.get(self.name, self.name)

    @property
    def pidfile(self) -> Path:
        return LAB_DIR / "pids" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return LAB_DIR / "logs" / f"{self.name}.log"


def services() -> list[Service]:
    return [
        Service("aws", ("aws", "aws_tls"), f"http://127.0.0.1:{port('aws')}/moto-api/"),
        Service("k8s", ("k8s",), f"http://127.0.0.1:{port('k8s')}/readyz"),
        Service("minibot", ("minibot",), f"http://127.0.0.1:{port('minibot')}/health"),
        Service("rtds", ("rtds",), f"http://127.0.0.1:{port('rtds')}/healthz"),
        Service("sinks", ("sink", "smtp"), f"http://127.0.0.1:{port('sink')}/healthz"),
    ]


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def port_in_use(p: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", p)) == 0


def http_ok(url: str, timeout: float = 1.0, cafile: Path | None = None) -> bool:
    try:
        ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310 (loopback only)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tls_url() -> str:
    return f"https://127.0.0.1:{port('aws_tls')}"


def tls_ok() -> bool:
    """The AWS server's TLS listener answers, its certificate verified with the lab CA (as pgBackRest does)."""
    return http_ok(f"{tls_url()}/_lab/ready", cafile=lab_tls.paths(LAB_DIR)["ca"])


# --------------------------------------------------------------------------- environment files


def load_secrets() -> dict:
    path = LAB_DIR / "secrets.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for key in SECRET_KEYS:
        if not data.get(key):
            # never the word "postgres": Ansible masks it everywhere in output (DESIGN.md)
            data[key] = f"lab-{key.replace('_', '-')}-{secrets.token_hex(12)}"
            changed = True
    if changed:
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.chmod(0o600)
    return data


def lab_env(sec: dict) -> dict[str, str]:
    aws = f"http://127.0.0.1:{port('aws')}"
    return {
        "LAB_DIR": str(LAB_DIR),
        "AWS_URL": aws,
        "AWS_ENDPOINT_URL": aws,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "KUBECONFIG": str(LAB_DIR / "kubeconfig"),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port("pg")),
        "PGUSER": DB_USER,
        "PGDATABASE": DB_NAME,
        "PGPASSWORD": sec["db_password"],
        "LAB_MINIBOT_URL": f"http://127.0.0.1:{port('minibot')}",
        "LAB_RTDS_URL": f"ws://127.0.0.1:{port('rtds')}/ws",
        "LAB_SINK_URL": f"http://127.0.0.1:{port('sink')}",
        "LAB_SMTP_PORT": str(port("smtp")),
        "LAB_PG_BIN": str(PG_BIN),
        # the AWS server over HTTPS, for clients that require TLS (pgBackRest's S3 repository); verify it with
        # LAB_CA_FILE, the lab's own CA (dev/lab/services/lab_tls.py), never by turning verification off
        "LAB_AWS_TLS_URL": tls_url(),
        "LAB_CA_FILE": str(lab_tls.paths(LAB_DIR)["ca"]),
    }


def write_env_files(env: dict[str, str]) -> None:
    lines = ["# generated by dev/lab/labctl.py: source .lab/env"]
    lines += [f"export {k}={json.dumps(v)}" for k, v in env.items()]
    (LAB_DIR / "env").write_text("\n".join(lines) + "\n")
    (LAB_DIR / "env").chmod(0o600)
    doc = {
        "root": str(ROOT),
        "lab_dir": str(LAB_DIR),
        "ports": {name: port(name) for name in PORTS},
        "env": env,
        "secrets_file": str(LAB_DIR / "secrets.json"),
    }
    (LAB_DIR / "lab.json").write_text(json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------- PostgreSQL


def pg_data() -> Path:
    return LAB_DIR / "pg" / "data"


def wal_archive() -> Path:
    return LAB_DIR / "pg" / "wal_archive"


def as_pg(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", PG_OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def pg_pid() -> int | None:
    pidfile = pg_data() / "postmaster.pid"
    return read_pid(pidfile) if pidfile.exists() else None


def pg_start(sec: dict) -> None:
    data = pg_data()
    run = LAB_DIR / "pg" / "run"
    if pg_pid():
        say(f"postgresql already running on port {port('pg')}")
        return
    if os.geteuid() == 0:
        # the postgres OS user must be able to reach .lab/pg through the checkout's path
        for parent in [LAB_DIR, *LAB_DIR.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
    if not (data / "PG_VERSION").exists():
        say(f"initialising PostgreSQL 15 cluster in {data}")
        (LAB_DIR / "pg").mkdir(parents=True, exist_ok=True)
        pwfile = LAB_DIR / "pg" / ".pw"
        pwfile.write_text(sec["db_password"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(LAB_DIR / "pg", PG_OS_USER, PG_OS_USER)
            shutil.chown(pwfile, PG_OS_USER, PG_OS_USER)
        try:
            as_pg(str(PG_BIN / "initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync")
        except subprocess.CalledProcessError as exc:
            raise LabError(f"initdb failed: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        # a new cluster restarts WAL numbering: an old archive would mix two histories
        shutil.rmtree(wal_archive(), ignore_errors=True)
        shutil.rmtree(LAB_DIR / "pgbackrest", ignore_errors=True)  # its stanza belongs to the old cluster
    run.mkdir(parents=True, exist_ok=True)
    wal_archive().mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(run, PG_OS_USER, PG_OS_USER)
        shutil.chown(wal_archive(), PG_OS_USER, PG_OS_USER)
    # WAL archiving for the RDS stand-in's point-in-time restores: every segment gzipped into .lab/pg/wal_archive
    # (wal_recycle off: a segment switched early by archive_timeout is zero-padded and compresses to a few KB)
    # and, once playbooks/pgbackrest.yml has configured the lab's stanza, pgbackrest archive-push
    # (dev/lab/bin/pgbackrest_archive_push.sh)
    archive_command = f"{ROOT / 'dev' / 'lab' / 'bin' / 'pgbackrest_archive_push.sh'} {LAB_DIR} %p %f"
    opts = (f"-p {port('pg')} -k {run} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB "
            "-c shared_buffers=512MB -c maintenance_work_mem=256MB -c max_connections=100 "
            f"-c archive_mode=on -c \"archive_command={archive_command}\" "
            f"-c archive_timeout={ARCHIVE_TIMEOUT} -c wal_recycle=off")
    res = as_pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
                "-o", opts, "-w", "-t", "30", "start", check=False)
    if res.returncode != 0:
        log = (data / "server.log").read_text()[-2000:] if (data / "server.log").exists() else ""
        raise LabError(f"PostgreSQL did not start: {res.stderr.strip() or res.stdout.strip()}\n{log}")
    say(f"postgresql up on 127.0.0.1:{port('pg')}")
    env = dict(os.environ, PGPASSWORD=sec["db_password"])
    conn = ["-h", "127.0.0.1", "-p", str(port("pg")), "-U", DB_USER]
    exists = subprocess.run([str(PG_BIN / "psql"), *conn, "-d", "template1", "-tAc",
                             "SELECT 1 FROM pg_database WHERE datname = 'ag_botkit'"],
                            check=False, capture_output=True, text=True, env=env)
    if exists.returncode != 0:
        raise LabError(f"cannot connect to the lab's PostgreSQL: {exists.stderr.strip()}")
    if exists.stdout.strip() != "1":
        subprocess.run([str(PG_BIN / "createdb"), *conn, DB_NAME], check=True, env=env)


def pg_stop() -> bool:
    if not pg_pid():
        return False
    res = as_pg(str(PG_BIN / "pg_ctl"), "-D", str(pg_data()), "-m", "fast", "-w", "-t", "30", "stop", check=False)
    if res.returncode != 0 and pg_pid():
        # a fast shutdown still archives the last WAL (pgBackRest to the lab's S3) and writes a checkpoint, which on a
        # loaded machine can outlast 30 s: this is the lab, so stop at once rather than return with it still running
        say("postgresql: fast shutdown did not finish in 30 s, stopping immediately")
        as_pg(str(PG_BIN / "pg_ctl"), "-D", str(pg_data()), "-m", "immediate", "-w", "-t", "30", "stop", check=False)
    return True


# --------------------------------------------------------------------------- up / down / status


def rds_instances() -> list[Path]:
    """The RDS stand-in's restored clusters (dev/lab/services/rds_standin.py)."""
    return rds_standin.instance_dirs(LAB_DIR)


def preflight() -> None:
    missing = []
    for tool in ("initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "pg_amcheck"):
        if not (PG_BIN / tool).exists():
            missing.append(str(PG_BIN / tool))
    if missing:
        raise LabError("PostgreSQL 15 server binaries are missing (" + ", ".join(missing) + "): "
                       "run `make setup` or `apt-get install -y postgresql-15 postgresql-contrib`")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise LabError("`runuser` is missing (util-linux): apt-get install -y util-linux")
    if not VENV_PY.exists():
        raise LabError(f"{VENV_PY} is missing: run `make setup` first")
    # a port in use by something that isn't ours: name it and say how to move it
    ours = {s.name: read_pid(s.pidfile) for s in services()}
    checks = [("pg", bool(pg_pid()))]
    for s in services():
        checks += [(p, bool(ours[s.name])) for p in s.ports]
    for name, running in checks:
        if not running and port_in_use(port(name)):
            var = PORTS[name][0]
            raise LabError(f"port {port(name)} ({name}) is already in use by another process; stop it, or move "
                           f"the lab's {name} elsewhere: {var}=<free port> make lab-up")


def start_service(svc: Service, env: dict) -> None:
    if read_pid(svc.pidfile):
        return
    svc.logfile.parent.mkdir(parents=True, exist_ok=True)
    svc.pidfile.parent.mkdir(parents=True, exist_ok=True)
    with svc.logfile.open("ab") as log:
        proc = subprocess.Popen(svc.argv(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    svc.pidfile.write_text(f"{proc.pid}\n")


def wait_ready(svc: Service, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if http_ok(svc.ready_url):
            return time.monotonic() - start
        if not read_pid(svc.pidfile):
            tail = svc.logfile.read_text(errors="replace")[-1500:] if svc.logfile.exists() else ""
            raise LabError(f"{svc.name} exited during start-up; its log ({svc.logfile}) ends:\n{tail}")
        time.sleep(0.1)
    raise LabError(f"{svc.name} did not answer {svc.ready_url} within {timeout:.0f}s; see {svc.logfile}")


def wait_tls(timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tls_ok():
            say(f"aws TLS front {tls_url()} verified with the lab CA")
            return
        time.sleep(0.1)
    ca, log = lab_tls.paths(LAB_DIR)["ca"], LAB_DIR / "logs" / "aws.log"
    raise LabError(f"the AWS server's TLS listener {tls_url()} did not answer with a certificate the lab CA ({ca}) "
                   f"verifies within {timeout:.0f}s; see {log}")


def run_step(name: str, argv: list[str], env: dict) -> None:
    t0 = time.monotonic()
    res = subprocess.run(argv, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"{name} failed (exit {res.returncode}):\n{res.stdout[-1500:]}\n{res.stderr[-2500:]}")
    say(f"{name} done in {time.monotonic() - t0:.1f}s")


def reserve_ports() -> None:
    """Keep the lab's ports out of the kernel's ephemeral range, so that an outgoing connection of some
    other program cannot hold one of them when a service binds it (they all lie inside 32768-60999)."""
    path = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
    try:
        current = path.read_text().strip()
        have = set(current.split(",")) if current else set()
        want = {str(port(name)) for name in PORTS}
        if not want <= have:
            path.write_text(",".join(sorted(have | want)) + "\n")
    except OSError:
        pass  # not root, or a read-only /proc: the ports are checked before start anyway


def cmd_up(_args) -> int:
    t0 = time.monotonic()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    for sub in ("pids", "logs", "faults", "sinks"):
        (LAB_DIR / sub).mkdir(exist_ok=True)
    preflight()
    reserve_ports()
    sec = load_secrets()
    _tls, made = lab_tls.ensure(LAB_DIR)
    if made:
        say(f"lab CA and the AWS endpoint's certificate made in {_tls['dir']} (CA: {_tls['ca']})")
    env_vars = lab_env(sec)
    write_env_files(env_vars)
    env = dict(os.environ)
    env.update(env_vars)
    try:
        pg_start(sec)
        # services that don't need the database start while it is seeded
        for svc in services():
            start_service(svc, env)
        seed = [str(VENV_PY), str(ROOT / "dev" / "lab" / "seed_db.py")]
        if os.environ.get("LAB_DB_SCALE"):
            seed += ["--scale", os.environ["LAB_DB_SCALE"]]
        run_step("database seed", seed, env)
        with ThreadPoolExecutor(max_workers=len(services())) as pool:
            waits = dict(zip([s.name for s in services()], pool.map(wait_ready, services()), strict=True))
        say("services ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in waits.items()))
        wait_tls()
        run_step("aws seed", [str(VENV_PY), str(ROOT / "dev" / "lab" / "seed_aws.py"), "--endpoint",
                              env_vars["AWS_URL"], "--lab-dir", str(LAB_DIR)], env)
        run_step("k8s nodes -> EC2", [str(VENV_PY), str(ROOT / "dev" / "lab" / "seed_k8s_nodes.py"), "--k8s-url",
                                      f"http://127.0.0.1:{port('k8s')}", "--lab-dir", str(LAB_DIR)], env)
    except LabError:
        say("start-up failed: stopping what this run started (make lab-down)")
        cmd_down(None, quiet=True)
        raise
    say(f"lab ready in {time.monotonic() - t0:.1f}s — `source .lab/env` to point tools at it")
    return 0


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # reap if it is our child (it is not, normally: it was started by another labctl run)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pod_processes() -> list[dict]:
    """Pods the Kubernetes emulator runs as processes (its <lab-dir>/k8s/processes.json), still alive."""
    try:
        rows = json.loads((LAB_DIR / "k8s" / "processes.json").read_text())
    except (OSError, ValueError):
        return []
    alive = []
    for row in rows if isinstance(rows, list) else []:
        try:  # the same process still: its command line names the pod's folder
            cmdline = Path(f"/proc/{int(row['pid'])}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, KeyError, TypeError, ValueError):
            continue
        if row.get("folder") and row["folder"] in cmdline:
            alive.append(row)
    return alive


def cmd_down(_args, quiet: bool = False) -> int:
    stopped = []
    for svc in services():
        pid = read_pid(svc.pidfile)
        if pid:
            stop_pid(pid)
            stopped.append(svc.name)
        svc.pidfile.unlink(missing_ok=True)
    for folder in rds_instances():
        if rds_standin.stop_cluster(PG_BIN, folder):
            stopped.append(f"rds {folder.parent.name}/{folder.name}")
    # the emulator stops its pods' processes on SIGTERM; these are what a killed emulator left behind
    leftovers = pod_processes()
    for row in leftovers:
        stop_pid(int(row["pid"]), timeout=3.0)
    if leftovers:
        stopped.append(f"{len(leftovers)} pod process(es) the emulator left")
    if LAB_DIR.exists() and pg_stop():
        stopped.append("postgresql")
    if stopped and not quiet:
        say("stopped: " + ", ".join(stopped))
    return 0


def cmd_status(_args) -> int:
    if not (LAB_DIR / "lab.json").exists():
        say("lab is not up (no .lab/lab.json): make lab-up")
        return 1
    bad = 0
    pid = pg_pid()
    pg_ok = bool(pid) and subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port("pg"))], check=False,
        capture_output=True).returncode == 0
    print(f"{'postgresql':10} {'up' if pg_ok else 'DOWN':5} port {port('pg'):<6} pid {pid or '-'}")
    bad += not pg_ok
    for svc in services():
        pid = read_pid(svc.pidfile)
        ok = bool(pid) and http_ok(svc.ready_url)
        bad += not ok
        ports = "/".join(str(port(p)) for p in svc.ports)
        print(f"{svc.name:10} {'up' if ok else 'DOWN':5} port {ports:<6} pid {pid or '-'}")
        if svc.name == "aws":
            ok = bool(pid) and tls_ok()
            bad += not ok
            print(f"{'aws-tls':10} {'up' if ok else 'DOWN':5} port {port('aws_tls'):<6} pid {pid or '-'}  "
                  f"{tls_url()}, CA {lab_tls.paths(LAB_DIR)['ca']}")
    for folder in rds_instances():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        pid = read_pid(folder / "data" / "postmaster.pid")
        print(f"{'rds':10} {'up' if pid else 'DOWN':5} port {meta.get('port', '-'):<6} pid {pid or '-'}  "
              f"{folder.parent.name}/{folder.name} (restored RDS instance)")
    for row in pod_processes():
        where = f"{row['cluster']}/{row['namespace']}/{row['pod']}"
        state = "ready" if row.get("ready") else "up"
        print(f"{'  pod':10} {state:5} port {row['port']:<6} pid {row['pid']:<7} {where}")
    faults = sorted(p.name for p in (LAB_DIR / "faults").glob("*.*") if p.is_file())
    print("faults on: " + (", ".join(faults) if faults else "none"))
    return 1 if bad else 0


def cmd_env(_args) -> int:
    print((LAB_DIR / "env").read_text(), end="")
    return 0


KNOWN_FAULTS = {
    "aws.throttle": "throttle AWS calls ({service, action, count})",
    "aws.error": "500 InternalError on AWS calls ({service, action, count})",
    "aws.down": "every AWS call fails",
    "k8s.node_notready": "nodes report NotReady, their pod processes stop ({nodes: [...]}, default all)",
    "k8s.rollout_stuck": "named deployments never become available ({deployments: [...]})",
    "k8s.api_error": "every Kubernetes API call answers 500",
    "k8s.node_failure": "nodes NotReady until rebooted or node group updated ({nodes, recovers_on})",
    "k8s.control_plane": "/readyz fails until the cluster is rebuilt in EKS ({clusters, checks, livez})",
    "minibot.down": "the bot's API refuses every request",
    "minibot.error": "kill-switch endpoints answer 500",
    "minibot.slow": "responses delayed ({seconds: N}, default 10)",
    "minibot.ignore_trigger": "trigger says halted but the bot keeps writing",
    "pg.archive_fail": "the lab primary's archive_command fails (WAL piles up, RPO grows)",
    "rtds.down": "the market-data feed refuses connections",
    "rtds.gaps": "the feed skips sequence numbers",
    "rtds.stall": "the feed stops sending after subscribe",
    "sinks.slack_down": "Slack webhook answers 503",
    "sinks.pagerduty_down": "PagerDuty answers 503",
    "sinks.statuspage_down": "status page answers 503",
    "sinks.smtp_down": "SMTP refuses messages",
}


def cmd_fault(args) -> int:
    fdir = LAB_DIR / "faults"
    fdir.mkdir(parents=True, exist_ok=True)
    if args.action == "list":
        for name, what in KNOWN_FAULTS.items():
            state = "ON " if (fdir / name).exists() else "off"
            print(f"{state} {name:26} {what}")
        print("data faults: dev/lab/aws_faults.py (corrupt/restore a backup object, delete DR snapshots)")
        return 0
    if args.action == "off" and args.all:
        for p in fdir.glob("*.*"):
            if p.is_file():
                p.unlink()
        say("all faults off")
        return 0
    if not args.name:
        raise LabError("name a fault: labctl fault list")
    if args.name not in KNOWN_FAULTS:
        raise LabError(f"unknown fault {args.name!r}; known: {', '.join(KNOWN_FAULTS)}")
    path = fdir / args.name
    if args.action == "on":
        opts = json.loads(args.options) if args.options else {}
        path.write_text(json.dumps(opts))
        say(f"fault {args.name} ON {opts or ''}".rstrip())
    else:
        path.unlink(missing_ok=True)
        say(f"fault {args.name} off")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labctl", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up").set_defaults(func=cmd_up)
    sub.add_parser("down").set_defaults(func=cmd_down)
    sub.add_parser("status").set_defaults(func=cmd_status)
    sub.add_parser("env").set_defaults(func=cmd_env)
    f = sub.add_parser("fault")
    f.add_argument("action", choices=["list", "on", "off"])
    f.add_argument("name", nargs="?")
    f.add_argument("--options", help="JSON options of the fault")
    f.add_argument("--all", action="store_true", help="with off: every fault")
    f.set_defaults(func=cmd_fault)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        print(f"[lab] ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

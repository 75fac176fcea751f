"""Region failover (playbooks/region_failover.yml) against the lab: the faults of issues 4 and 10, in one module.

A lab reset (dev/playbooks/failback_lab.yml: DNS back on the primary, DR namespace/database/Terraform workspace
removed, run state forgotten, then the lab's nightly backup, snapshot and DR copy) costs minutes, so the module runs
it once at the start, then only where a test needs a clean lab and the previous one left a trace, and at the end only
if something is left.

- First the cases that change nothing: check mode, and no snapshot in the recovery region (stops in preflight).
- Then one shared failover set-up (`failed_over`): region_failover.yml runs every step but DNS. Each case injects its
  fault at the step under test (the restored DR database, the DR cluster, the RTDS feed, the manifest) and runs only
  the steps from the database on (`--tags database,applications,verify,dns,report`): the failure must name the check,
  DNS must be unchanged, and the failure must be notified with the DNS answer read back. A damaged DR database is
  replaced by a fresh restore of the same snapshot after its case (the stand-in restores in about a second); a case
  that needs fresh deployments drops the DR namespace first, so that the run's applications step creates them again.
  The DR bot is asked through its Service (the API server's service proxy) and must report the restored database.
- Then DNS is flipped (records saved, then failback mode); a failure midway through a full run on a reset lab is
  resumed by the same command and must end in the same state as the shared set-up's clean run with DNS flipped; last,
  a drill tears down only what it tagged and keeps a final snapshot.
A fault that an earlier step would legitimately catch is turned on as the step under test starts
(failover_faults.run_with_fault_at), so that the test still proves that step's check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import boto3
import psycopg
import pytest
import requests
from failover_faults import run_with_fault_at

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = "playbooks/region_failover.yml"
FAILBACK = "dev/playbooks/failback_lab.yml"
RECOVERY = "us-west-2"
TARGET_DB = "ag-botkit-dr-timescaledb"
RECORD = "api.ag-botkit.example.com."
INVENTORY = os.environ.get("REGION_FAILOVER_INVENTORY", "inventories/lab")
FAST = {"app_deploy_rollout_timeout": 45, "dr_verify_monitor_duration": 1, "verify_rtds_timeout": 5}
FROM_DATABASE = "database,applications,verify,dns,report"
RTDS_PROBE = "Verify | Verify RTDS connectivity"
# the rollout check's own failure: a short wait, for a deployment that never becomes available
SHORT_ROLLOUT = {**FAST, "app_deploy_rollout_timeout": 8}


def _out(proc) -> str:
    return proc.stdout + proc.stderr


def _client(lab, service: str, region: str = "us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=lab["env"]["AWS_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _records(lab) -> dict:
    r53 = _client(lab, "route53")
    zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "ag-botkit.example.com."][0]
    sets = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    return {s["Failover"]: s for s in sets if s["Name"] == RECORD and s.get("Failover")}


def _dns_answer(lab) -> str:
    return _records(lab)["PRIMARY"]["ResourceRecords"][0]["Value"]


def _dr_db(lab) -> dict | None:
    dbs = [d for d in _client(lab, "rds", RECOVERY).describe_db_instances()["DBInstances"]
           if d["DBInstanceIdentifier"] == TARGET_DB]
    return dbs[0] if dbs else None


def _dr_sql(lab, *statements: str) -> None:
    db = _dr_db(lab)
    assert db and db["DBInstanceStatus"] == "available", db
    with psycopg.connect(host=db["Endpoint"]["Address"], port=db["Endpoint"]["Port"], user="agbot",
                         password=lab["secrets"]["db_password"], dbname="ag_botkit", autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _fresh_dr_db(lab) -> None:
    """Replace a damaged DR database by a fresh restore of the same snapshot, with the same tags (restore point) as
    the playbook gave it: delete, restore, wait until available (the stand-in keeps the endpoint's port)."""
    rds = _client(lab, "rds", RECOVERY)
    db = _dr_db(lab)
    tags = rds.list_tags_for_resource(ResourceName=db["DBInstanceArn"])["TagList"]
    snapshot = {t["Key"]: t["Value"] for t in tags}["agbotkit-dr/restored-from"]
    rds.delete_db_instance(DBInstanceIdentifier=TARGET_DB, SkipFinalSnapshot=True)
    deadline = time.time() + 60
    while _dr_db(lab) is not None and time.time() < deadline:
        time.sleep(0.5)
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=TARGET_DB, DBSnapshotIdentifier=snapshot,
                                             DBSubnetGroupName=db["DBSubnetGroup"]["DBSubnetGroupName"], Tags=tags)
    deadline = time.time() + 120
    while (_dr_db(lab) or {}).get("DBInstanceStatus") != "available" and time.time() < deadline:
        time.sleep(0.5)
    assert _dr_db(lab)["Endpoint"]["Port"] == db["Endpoint"]["Port"]


def _sink(lab, channel: str) -> list[dict]:
    return requests.get(f"{lab['env']['LAB_SINK_URL']}/_sink/{channel}", timeout=10).json()


def _clear_sinks(lab) -> None:
    for channel in ("slack", "pagerduty", "statuspage", "smtp"):
        requests.delete(f"{lab['env']['LAB_SINK_URL']}/_sink/{channel}", timeout=10)


def _texts(lab) -> list[str]:
    return [json.dumps(e.get("body")) for e in _sink(lab, "slack")]



def _seeded_answer(lab) -> str:
    return json.loads((Path(lab["lab_dir"]) / "aws_seed.json").read_text())["route53"]["primary_target"]


def _tf_resources(lab) -> list[str]:
    state = Path(lab["lab_dir"]) / "terraform" / "terraform.tfstate.d" / "dr" / "terraform.tfstate"
    if not state.exists():
        return []
    return sorted(f"{r['type']}.{r['name']}" for r in json.loads(state.read_text()).get("resources", [])
                  if r.get("mode") == "managed")


def _deployments(lab_env, lab) -> dict:
    kubeconfig = Path(lab["lab_dir"]) / "region_failover" / "kubeconfig-ag-botkit-dr-eks"
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", "ag-botkit", "get", "deployments",
                           "-o", "json"], env=lab_env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return {d["metadata"]["name"]: (d["status"].get("availableReplicas", 0), d["spec"]["replicas"])
            for d in json.loads(proc.stdout)["items"]}


def _end_state(lab, lab_env) -> dict:
    db = _dr_db(lab)
    return {"dns": _dns_answer(lab), "db": db and (db["DBInstanceStatus"], db["DBSubnetGroup"]["DBSubnetGroupName"]),
            "terraform": _tf_resources(lab), "deployments": _deployments(lab_env, lab)}


def _aws_faults(lab_env, *args: str) -> None:
    proc = subprocess.run([str(ROOT / ".venv/bin/python"), "dev/lab/aws_faults.py", *args], cwd=ROOT, env=lab_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _failback(run_playbook) -> None:
    proc = run_playbook(FAILBACK, inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]


def _failover_traces(lab) -> list[str]:
    """What a failover left in the lab (empty: the lab is as failback_lab.yml leaves it, backups aside)."""
    left = []
    state = Path(lab["lab_dir"]) / "region_failover" / "region_failover.json"
    if state.exists() and json.loads(state.read_text()).get("status") != "completed":
        left.append("an unfinished run")
    if _dr_db(lab) is not None:
        left.append("the DR database")
    tf = Path(lab["lab_dir"]) / "terraform" / "terraform.tfstate.d" / "dr" / "terraform.tfstate"
    if tf.exists() and json.loads(tf.read_text()).get("resources"):
        left.append("the Terraform dr workspace")
    if _k8s(lab, "GET", "/api/v1/namespaces/ag-botkit").status_code != 404:
        left.append("the DR namespace")
    seeded = json.loads((Path(lab["lab_dir"]) / "aws_seed.json").read_text())["route53"]["primary_target"]
    if _dns_answer(lab) != seeded:
        left.append("DNS")
    return left


@pytest.fixture(scope="module", autouse=True)
def seeded_lab(lab, run_playbook):
    """The lab as seeded, with a fresh nightly backup and DR snapshot copy, once for the module; reset again after
    the last test only if a trace of a failover is left."""
    _failback(run_playbook)
    yield
    if _failover_traces(lab):
        _failback(run_playbook)


@pytest.fixture
def clean_lab(lab, run_playbook):
    """A lab with no trace of a failover: resets it only if the previous test left one."""
    if _failover_traces(lab):
        _failback(run_playbook)


@pytest.fixture(scope="module")
def failed_over(lab, run_playbook):
    """The shared set-up: a clean lab, then a failover of every step but DNS. Yields the extra vars of a run."""
    if _failover_traces(lab):
        _failback(run_playbook)
    _clear_sinks(lab)
    started = time.time()
    proc = run_playbook(PLAYBOOK, "--skip-tags", "dns", extra_vars=FAST, inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-4000:]
    state = json.loads((Path(lab["lab_dir"]) / "terraform" / "terraform.tfstate.d" / "dr" / "terraform.tfstate")
                       .read_text())
    subnet_group = [r for r in state["resources"] if r["type"] == "aws_db_subnet_group"][0]["instances"][0][
        "attributes"]["name"]
    return {"proc": proc, "started": started, "extra": {**FAST, "db_restore_rds_subnet_group": subnet_group}}


def _run_from_database(run_playbook, failed_over, **extra):
    return run_playbook(PLAYBOOK, "--tags", FROM_DATABASE, extra_vars={**failed_over["extra"], **extra},
                        inventory=INVENTORY)


def _stop_message(out: str) -> str:
    """The message the run stopped with (what the rescue reports and notifies), whitespace flattened."""
    flat = " ".join(out.split())
    found = re.findall(r"Region failover stopped in step verify: (.*?) DNS was not changed", flat)
    assert found, f"the run did not stop in step verify:\n{out[-3000:]}"
    return found[-1]


def _assert_stopped(proc, lab, primary: str, *needles) -> str:
    """The run stopped in step verify with a message holding every needle (str or re.Pattern); DNS was kept."""
    out = _out(proc)
    assert proc.returncode != 0, out[-3000:]
    message = _stop_message(out)
    for needle in needles:
        if isinstance(needle, re.Pattern):
            assert needle.search(message), f"{needle.pattern!r} not in the stop message: {message}"
        else:
            assert needle in message, f"{needle!r} not in the stop message: {message}"
    assert _dns_answer(lab) == primary, "DNS must not be changed when a verification fails"
    assert f"DNS was not changed ({RECORD.rstrip('.')} answers {primary})" in " ".join(out.split())
    failed = [t for t in _texts(lab) if "Region failover FAILED in step verify" in t]
    assert failed, f"no failure notification in the Slack sink: {_texts(lab)}"
    assert "was not changed" in failed[-1] and primary in failed[-1]
    return out


# -- cases that change nothing (a clean lab) -----------------------------------------------------------------------

def test_check_mode_changes_nothing(clean_lab, run_playbook, lab):
    before = _dns_answer(lab)
    proc = run_playbook(PLAYBOOK, "--check", inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]
    assert "Terraform dr: Plan:" in _out(proc)
    assert _dns_answer(lab) == before
    assert _dr_db(lab) is None
    assert _tf_resources(lab) == []


def test_no_snapshot_in_recovery_region_stops_in_preflight(clean_lab, run_playbook, lab, lab_env):
    primary = _dns_answer(lab)
    _aws_faults(lab_env, "delete-snapshots", "--region", RECOVERY)
    try:
        proc = run_playbook(PLAYBOOK, extra_vars=SHORT_ROLLOUT, inventory=INVENTORY)
    finally:
        _aws_faults(lab_env, "restore-snapshots", "--region", RECOVERY)
    out = _out(proc)
    assert proc.returncode != 0
    assert "stopped in step preflight" in out
    assert "No snapshot of ag-botkit-production-timescaledb is available in us-west-2" in out
    # nothing changed
    assert _tf_resources(lab) == []
    assert _dr_db(lab) is None
    assert _dns_answer(lab) == primary


# -- the shared failover set-up, then one fault per case, from the database step on --------------------------------

def test_the_restored_database_is_verified_and_the_declaration_notified(failed_over, lab):
    out = _out(failed_over["proc"])
    flat = " ".join(out.split())
    db = _dr_db(lab)
    assert db["DBInstanceStatus"] == "available" and db["Endpoint"]["Address"] == "127.0.0.1"
    # the integrity check ran against the restored endpoint, with a manifest, listing every table
    assert f"Integrity of ag_botkit on 127.0.0.1:{db['Endpoint']['Port']}: " in flat
    for table in ("public.fills", "public.orders", "public.metrics", "public.markets", "public.positions"):
        assert f"{table}: " in flat
    assert "(rows up to its watermark)" in flat and "amcheck on" in flat
    # the DR bot, through its Service, reports the restored database as its backend
    assert "Health of minibot (DR, Service ag-botkit/minibot) as expected" in flat
    answer = _k8s(lab, "GET", "/api/v1/namespaces/ag-botkit/services/minibot:http/proxy/health").json()
    assert answer["database"]["host"] == "127.0.0.1" and answer["database"]["port"] == str(db["Endpoint"]["Port"])
    # the first message went out at declare, well within the P0 deadline (15 min)
    sent = [e for e in _sink(lab, "slack") if "Started region failover" in json.dumps(e.get("body"))]
    assert sent, _texts(lab)


def test_partial_dr_database_fails_integrity_and_keeps_dns(failed_over, lab, run_playbook):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    _dr_sql(lab, "DELETE FROM fills WHERE id % 3 = 0")
    try:
        proc = _run_from_database(run_playbook, failed_over)
        _assert_stopped(proc, lab, primary, "Failed integrity check of 127.0.0.1:",
                        "public.fills: ", "(the backup's newest), the backup held", "row(s) missing")
    finally:
        _fresh_dr_db(lab)


def test_empty_dr_database_fails_integrity(failed_over, lab, run_playbook):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    _dr_sql(lab, "TRUNCATE fills, orders, metrics, positions, markets CASCADE")
    try:
        proc = _run_from_database(run_playbook, failed_over)
        # each emptied table is named with what the backup held: append-only tables up to the backup's newest row,
        # positions (updated in place) by count
        _assert_stopped(proc, lab, primary, "Failed integrity check of 127.0.0.1:",
                        re.compile(r"public\.orders: 0 rows up to \S+ \S+ \(the backup's newest\), "
                                   r"the backup held ([1-9]\d*): \1 row\(s\) missing"),
                        re.compile(r"public\.fills: 0 rows up to .{0,60}the backup held ([1-9]\d*): \1 row\(s\) "
                                   r"missing"),
                        re.compile(r"public\.positions: 0 rows, the backup held ([1-9]\d*): \1 row\(s\) deleted"))
    finally:
        _fresh_dr_db(lab)


def test_missing_table_fails_integrity(failed_over, lab, run_playbook):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    _dr_sql(lab, "DROP TABLE positions")
    try:
        proc = _run_from_database(run_playbook, failed_over)
        _assert_stopped(proc, lab, primary, "Failed integrity check", "public.positions: table is missing")
    finally:
        _fresh_dr_db(lab)


def test_no_manifest_before_the_restore_point_fails(failed_over, lab, run_playbook):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    proc = _run_from_database(run_playbook, failed_over, verify_manifest_prefix="no-backups-here")
    _assert_stopped(proc, lab, primary, "Check data integrity: no backup manifest at or before the restore point")


def test_rtds_stalled_fails_and_keeps_dns(failed_over, lab, run_playbook):
    """A feed stalled before the run makes the rtds-client pods unready and the rollout check stops the run first
    (test_dr_pod_never_ready covers that check); the stall starts as the RTDS probe starts, so the probe must catch
    it."""
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    proc = run_with_fault_at(run_playbook, lab, PLAYBOOK, RTDS_PROBE, "rtds.stall", "--tags", FROM_DATABASE,
                             extra_vars=failed_over["extra"], inventory=INVENTORY)
    _assert_stopped(proc, lab, primary, "RTDS stalled: no tick for", "after 0 of 20 ticks")


def test_rtds_probe_failing_keeps_dns(failed_over, lab, run_playbook):
    """RTDS down fails the RTDS check, by name, and DNS is kept. rtds.down before the run would make the rtds-client
    pods unready and stop the run at the rollout check first, so it is turned on as the RTDS probe starts."""
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    proc = run_with_fault_at(run_playbook, lab, PLAYBOOK, RTDS_PROBE, "rtds.down", "--tags", FROM_DATABASE,
                             extra_vars=failed_over["extra"], inventory=INVENTORY)
    _assert_stopped(proc, lab, primary, "Failed to connect to RTDS ws://")
    assert "the server rejected the websocket handshake" in _out(proc), _out(proc)[-3000:]

def _k8s(lab, method: str, path: str):
    base = f"http://127.0.0.1:{lab['ports']['k8s']}/clusters/ag-botkit-dr-eks"
    return requests.request(method, base + path, timeout=15)


def _drop_dr_namespace(lab) -> None:
    """The next run's applications step creates the namespace again (deletion is asynchronous: wait for it)."""
    _k8s(lab, "DELETE", "/api/v1/namespaces/ag-botkit")
    deadline = time.time() + 90
    while _k8s(lab, "GET", "/api/v1/namespaces/ag-botkit").status_code != 404 and time.time() < deadline:
        time.sleep(0.5)


def test_rollout_never_available_fails_at_verify_naming_it(failed_over, lab, run_playbook, fault):
    """A rollout that never becomes available (a stuck rollout of fresh deployments: the namespace is dropped, so the
    applications step creates them again) fails the rollout check, naming the deployment and the wait."""
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    _drop_dr_namespace(lab)
    fault("k8s.rollout_stuck", {"deployments": ["rtds-client"], "clusters": ["ag-botkit-dr-eks"]})
    try:
        proc = _run_from_database(run_playbook, failed_over, **SHORT_ROLLOUT)
        _assert_stopped(proc, lab, primary, "never became available in ag-botkit-dr-eks within 8 s: rtds-client")
    finally:
        _drop_dr_namespace(lab)

def test_dr_pod_never_ready_fails_and_keeps_dns(failed_over, lab, run_playbook, fault):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    fault("k8s.node_notready")   # the DR cluster's nodes go NotReady: their pods stop, nothing is Ready
    proc = _run_from_database(run_playbook, failed_over)
    _assert_stopped(proc, lab, primary, "never became available in ag-botkit-dr-eks", "minibot")


def test_dr_bot_unable_to_log_in_fails_and_keeps_dns(failed_over, lab, run_playbook):
    """A DR bot with a wrong Secret never becomes Ready (its readiness probe is /health, 503 without its database), so
    the rollout check stops the run, naming it. Its Service then has no endpoint; the cause is read through the pod.
    The health check alone (roles/verify) on that deployment fails too, naming each endpoint and its HTTP status, for
    an answer with the bot's db_error (the pod) and without it (the Service)."""
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    sec = lab["secrets"]
    wrong = {"DATABASE_PASSWORD": "not-the-password", "KILL_SWITCH_TOKEN": sec["kill_switch_token"],
             "EXCHANGE_API_KEY": sec["exchange_api_key"], "EXCHANGE_API_SECRET": sec["exchange_api_secret"]}
    _drop_dr_namespace(lab)   # a fresh deployment, whose bot starts with the wrong Secret
    try:
        proc = _run_from_database(run_playbook, failed_over, app_deploy_secrets=wrong)
        _assert_stopped(proc, lab, primary, "never became available in ag-botkit-dr-eks", "minibot",
                        "(readiness probe failing)")
        assert "not-the-password" not in _out(proc), "a secret reached the output"
        # the cause, as the DR bot reports it through its pod (a Service without a Ready pod has no endpoint)
        pods = _k8s(lab, "GET", "/api/v1/namespaces/ag-botkit/pods?labelSelector=app.kubernetes.io/name=minibot")
        via_pod = f"/api/v1/namespaces/ag-botkit/pods/{pods.json()['items'][0]['metadata']['name']}/proxy/health"
        answer = _k8s(lab, "GET", via_pod)
        assert answer.status_code == 503 and "password authentication failed" in answer.json()["db_error"]
        via_service = _k8s(lab, "GET", "/api/v1/namespaces/ag-botkit/services/minibot:http/proxy/health")
        assert via_service.status_code == 503 and "db_error" not in via_service.json()

        base = f"http://127.0.0.1:{lab['ports']['k8s']}/clusters/ag-botkit-dr-eks"
        proc = run_playbook("tests/integration/playbooks/verify_health.yml", inventory=INVENTORY, extra_vars={
            "verify_health_extra": [{"name": "minibot pod", "url": base + via_pod}]})
        out = " ".join(_out(proc).split())
        assert proc.returncode != 0, out[-3000:]
        assert "Health of minibot (DR, Service ag-botkit/minibot): HTTP 503, expected 200 (answer: " in out, out[-3000:]
        assert "no endpoints available for service" in out, out[-3000:]
        assert "Health of minibot pod: HTTP 503, expected 200 (answer: " in out, out[-3000:]
        assert '"db_error": ' in out, out[-3000:]   # the answer is cut at 300 characters, the cause above
        assert "not-the-password" not in out, "a secret reached the output"
    finally:
        _drop_dr_namespace(lab)


def test_dr_bot_on_the_primary_database_fails_and_keeps_dns(failed_over, lab, run_playbook):
    primary = _dns_answer(lab)
    _clear_sinks(lab)
    _drop_dr_namespace(lab)
    wrong = {"DATABASE_HOST": "127.0.0.1", "DATABASE_PORT": str(lab["ports"]["pg"]), "REGION": RECOVERY,
             "RTDS_URL": lab["env"]["LAB_RTDS_URL"]}
    try:
        proc = _run_from_database(run_playbook, failed_over, app_deploy_config=wrong)
        _assert_stopped(proc, lab, primary, "Health of minibot (DR, Service ag-botkit/minibot): database.port is "
                        f"{lab['ports']['pg']}, expected ")
    finally:
        _drop_dr_namespace(lab)


def test_dns_records_are_saved_and_failback_restores_them(failed_over, lab, lab_env, run_playbook):
    before = _records(lab)["PRIMARY"]
    saved_path = Path(lab["lab_dir"]) / "region_failover" / "dns_failover_saved.json"
    saved_path.unlink(missing_ok=True)
    proc = run_playbook("tests/integration/playbooks/dns_failback.yml", inventory=INVENTORY)
    assert proc.returncode != 0 and "Cannot fail back api.ag-botkit.example.com: no records saved" in _out(proc)

    proc = _run_from_database(run_playbook, failed_over)
    assert proc.returncode == 0, _out(proc)[-3000:]
    after = _records(lab)["PRIMARY"]
    assert after["ResourceRecords"] == _records(lab)["SECONDARY"]["ResourceRecords"]
    saved = json.loads(saved_path.read_text())
    assert saved["value"] == before["ResourceRecords"][0]["Value"]
    assert saved["health_check_id"] == before["HealthCheckId"] and before["HealthCheckId"]
    # a second run (DNS already on the recovery region) must not save the recovery answer over the original
    proc = _run_from_database(run_playbook, failed_over)
    assert proc.returncode == 0, _out(proc)[-3000:]
    assert json.loads(saved_path.read_text()) == saved
    # the end state of a clean run (DNS flipped): test_failure_midway compares its resumed run with it
    failed_over["clean_end_state"] = _end_state(lab, lab_env)

    proc = run_playbook("tests/integration/playbooks/dns_failback.yml", inventory=INVENTORY)
    assert proc.returncode == 0, _out(proc)[-3000:]
    restored = _records(lab)["PRIMARY"]
    assert restored["ResourceRecords"] == before["ResourceRecords"]
    assert restored.get("HealthCheckId") == before["HealthCheckId"]
    assert restored["TTL"] == before["TTL"]


def test_failure_midway_then_rerun_resumes_to_clean_state(failed_over, lab, lab_env, run_playbook):
    """A full run on a reset lab that fails at step 5 (verify: the RTDS feed stalls as the probe starts) is resumed
    by the same command and ends in the state of a clean run: the shared set-up's run, with DNS flipped (as the
    DNS test recorded it after its clean runs; run here only when that test did not run)."""
    clean = failed_over.get("clean_end_state")
    if clean is None:
        proc = _run_from_database(run_playbook, failed_over)   # the clean run's end state (DNS flipped), no fault
        assert proc.returncode == 0, _out(proc)[-3000:]
        clean = _end_state(lab, lab_env)
    assert clean["dns"] != _seeded_answer(lab) and clean["db"] and clean["terraform"], clean

    _failback(run_playbook)
    proc = run_with_fault_at(run_playbook, lab, PLAYBOOK, RTDS_PROBE, "rtds.stall", extra_vars=FAST,
                             inventory=INVENTORY)
    assert proc.returncode != 0
    assert "stopped in step verify" in _out(proc), _out(proc)[-3000:]
    state = json.loads((Path(lab["lab_dir"]) / "region_failover" / "region_failover.json").read_text())
    assert state["status"] == "failed"
    assert {"preflight", "infrastructure", "database", "applications"} <= set(state["completed"])

    # the same command again resumes and completes
    proc = run_playbook(PLAYBOOK, extra_vars=FAST, inventory=INVENTORY)
    out = _out(proc)
    assert proc.returncode == 0, out[-3000:]
    assert f"Resuming {state['incident_id']}" in out
    report = json.loads((ROOT / "reports" / state["incident_id"] / "region_failover.json").read_text())
    assert report["status"] == "completed"
    assert report["resumed"] in (True, "True", "true")
    assert report["rto_seconds"] and report["rpo_seconds"] is not None
    assert _end_state(lab, lab_env) == clean

def test_drill_tears_down_only_what_it_tagged_and_keeps_a_final_snapshot(clean_lab, lab, run_playbook):
    proc = run_playbook(PLAYBOOK, extra_vars={**FAST, "dr_mode": "drill"}, inventory=INVENTORY)
    out = _out(proc)
    assert proc.returncode == 0, out[-4000:]
    incident = json.loads((Path(lab["lab_dir"]) / "region_failover" / "region_failover.json").read_text())[
        "incident_id"]
    flat = " ".join(out.split())
    assert f"Removed what carried agbotkit-dr/incident={incident}: namespace yes, database yes (final snapshot " \
           "kept), Terraform workspace dr yes" in flat
    assert _dr_db(lab) is None
    snaps = _client(lab, "rds", RECOVERY).describe_db_snapshots(
        DBSnapshotIdentifier=f"{TARGET_DB}-final-{incident.lower()}")["DBSnapshots"]
    assert snaps and snaps[0]["DBInstanceIdentifier"] == TARGET_DB
    # the final snapshot holds data (the stand-in's physical copy)
    assert (Path(lab["lab_dir"]) / "rds" / "snapshots" / RECOVERY / f"{TARGET_DB}-final-{incident.lower()}"
            / "data" / "PG_VERSION").exists()

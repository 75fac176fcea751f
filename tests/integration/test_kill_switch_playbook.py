"""playbooks/kill_switch.yml against the lab's real minibot and PostgreSQL."""

from __future__ import annotations

import time

import psycopg


def orders(lab) -> int:
    env = lab["env"]
    with psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"],
                         dbname=env["PGDATABASE"], autocommit=True) as c:
        return c.execute("SELECT count(*) FROM orders").fetchone()[0]


def test_trigger_halts_writes_reset_resumes_them(lab, run_playbook):
    res = run_playbook("playbooks/kill_switch.yml", extra_vars={"kill_switch_state": "triggered"})
    assert res.returncode == 0, res.stdout[-3000:]
    assert "halt_confirmed: true" in res.stdout
    n = orders(lab)
    time.sleep(1.0)
    assert orders(lab) == n, "orders were written after a confirmed halt"
    again = run_playbook("playbooks/kill_switch.yml", extra_vars={"kill_switch_state": "triggered"})
    assert again.returncode == 0 and "changed=0" in again.stdout  # idempotent
    status = run_playbook("playbooks/kill_switch.yml")
    assert "state: halted" in status.stdout
    res = run_playbook("playbooks/kill_switch.yml", extra_vars={"kill_switch_state": "reset"})
    assert res.returncode == 0, res.stdout[-3000:]
    assert "resume_confirmed: true" in res.stdout
    n = orders(lab)
    time.sleep(1.0)
    assert orders(lab) > n
    assert lab["secrets"]["kill_switch_token"] not in res.stdout + res.stderr


def test_wrong_token_fails_clearly_and_changes_nothing(lab, run_playbook):
    res = run_playbook("playbooks/kill_switch.yml", extra_vars={"kill_switch_state": "triggered",
                                                                 "kill_switch_token": "wrong-token"})
    assert res.returncode != 0
    assert "token rejected" in res.stdout + res.stderr
    status = run_playbook("playbooks/kill_switch.yml")
    assert "state: trading" in status.stdout

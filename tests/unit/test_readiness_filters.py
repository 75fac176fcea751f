"""Pure verdicts of the readiness checks added in issue 15 (rds, recovery_region, route53): each can fail."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.filter import readiness as r  # noqa: E402

NOW = "2026-12-01T12:00:00Z"


def inst(lrt="2026-12-01T11:59:00Z", retention=7):
    return [{"db_instance_identifier": "db", "latest_restorable_time": lrt, "backup_retention_period": retention}]


def snap(ident, created, status="available"):
    return {"db_snapshot_identifier": ident, "snapshot_create_time": created, "status": status}


SNAPS = [snap("old", "2026-11-29T03:00:00Z"), snap("new", "2026-12-01T03:00:00Z"),
         snap("creating", "2026-12-01T11:00:00Z", status="creating")]


def test_rds_passes_within_objectives():
    v = r.rds_readiness(inst(), SNAPS, NOW, 3600, 90000, "db")
    assert v["ok"] and v["seconds"] == 60 and v["newest"] == "new" and v["snapshot_seconds"] == 32400


def test_rds_fails_on_old_restorable_time_old_snapshot_no_retention_and_missing_instance():
    v = r.rds_readiness(inst(lrt="2026-12-01T10:00:00Z"), SNAPS, NOW, 3600, 90000, "db")
    assert not v["ok"] and "7200 s old, over the RPO objective of 3600 s" in v["message"]
    v = r.rds_readiness(inst(), SNAPS, NOW, 3600, 3600, "db")
    assert not v["ok"] and "the daily backup is not running" in v["message"]
    v = r.rds_readiness(inst(retention=0), SNAPS, NOW, 3600, 90000, "db")
    assert not v["ok"] and "automated backups are off" in v["message"]
    v = r.rds_readiness(inst(), [], NOW, 3600, 90000, "db")
    assert not v["ok"] and "no available snapshot of db" in v["message"]
    v = r.rds_readiness([], SNAPS, NOW, 3600, 90000, "db")
    assert not v["ok"] and "RDS instance db not found" in v["message"]


KEYS = ["database/20261201T100000Z/manifest.json", "database/20261201T100000Z/dump/toc.dat",
        "database/20261201T110000Z/dump/toc.dat"]  # the 11:00 copy is incomplete (no manifest yet)


def test_recovery_region_uses_the_newest_complete_copy():
    v = r.recovery_region_readiness(KEYS, "database", SNAPS, NOW, 90000, "b-dr", "us-west-2")
    assert v["ok"] and v["dump"] == "20261201T100000Z" and v["dump_seconds"] == 7200 and v["snapshot"] == "new"
    v = r.recovery_region_readiness(KEYS, "database", None, NOW, 90000, "b-dr", "us-west-2")
    assert v["ok"] and v["snapshot"] is None   # not RDS: no snapshot copies asked for


def test_recovery_region_fails_without_copies_or_with_old_ones():
    v = r.recovery_region_readiness(KEYS[2:], "database", [], NOW, 90000, "b-dr", "us-west-2")
    assert not v["ok"] and "no complete dump copy in s3://b-dr/database/ (us-west-2)" in v["message"]
    assert "no RDS snapshot copy in us-west-2" in v["message"]
    v = r.recovery_region_readiness(KEYS, "database", SNAPS, NOW, 3600, "b-dr", "us-west-2")
    assert not v["ok"] and "replication has stopped" in v["message"] and "cross-region copy has stopped" in v["message"]


STATE = {"record": "api.x", "answer": "primary.lb", "secondary_answer": "dr.lb", "health_check": "hc-1"}
HC = {"id": "hc-1", "health_check_config": {"type": "HTTPS", "fully_qualified_domain_name": "primary.lb",
                                            "resource_path": "/health"}}


def test_route53_verdicts():
    assert r.route53_readiness(STATE, HC)["ok"]
    v = r.route53_readiness({**STATE, "health_check": ""}, None)
    assert not v["ok"] and "has no health check attached" in v["message"]
    v = r.route53_readiness(STATE, None)
    assert not v["ok"] and "names health check hc-1, which does not exist" in v["message"]
    v = r.route53_readiness({**STATE, "secondary_answer": ""}, HC)
    assert not v["ok"] and "no SECONDARY record" in v["message"]
    v = r.route53_readiness({**STATE, "answer": ""}, HC)
    assert not v["ok"] and "no PRIMARY failover record" in v["message"]

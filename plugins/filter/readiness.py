# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.agbotkit.dr.plugins.filter.backups import backup_ids  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._backup import backup_id_time  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._pgbackrest import (  # noqa: E402
    archive_rpo, iso, parse_time)


def backup_age(backups, now, objective):
    good = [b for b in (backups or []) if not b.get("error")]
    if not good:
        return {"ok": False, "seconds": None, "newest": None,
                "message": "no pgBackRest backup: take one (playbooks/pgbackrest.yml -e pgbackrest_backup_type=full)"}
    newest = max(good, key=lambda b: parse_time(b["stop"]))
    age = round((parse_time(now) - parse_time(newest["stop"])).total_seconds(), 1)
    ok = age <= float(objective)
    msg = ("newest backup %s finished %s, %.0f s ago (objective %.0f s)"
           % (newest["label"], iso(parse_time(newest["stop"])), age, float(objective)))
    if not ok:
        msg += (": the backup schedule is not running; run playbooks/pgbackrest.yml -e pgbackrest_backup_type=incr "
                "and check the scheduler")
    return {"ok": ok, "seconds": age, "newest": newest["label"], "message": msg}


def _age(now, then):
    # never negative: "now" is when the readiness run started, a little before the value was read
    return max(0.0, round((parse_time(now) - parse_time(then)).total_seconds(), 1))


def rds_readiness(instances, snapshots, now, objective, max_age, instance):
    if not instances:
        return {"ok": False, "seconds": None, "newest": None, "latest_restorable_time": None,
                "message": "RDS instance %s not found: check dr_rds_source_instance and the region (or leave rds out "
                           "of readiness_checks when the database is not RDS)" % instance}
    inst = instances[0]
    problems, parts = [], []
    if not int(inst.get("backup_retention_period") or 0):
        problems.append("automated backups are off (backup retention 0): no point-in-time restore is possible; "
                        "set a backup retention period (terraform, or aws rds modify-db-instance "
                        "--backup-retention-period 30)")
    lrt = inst.get("latest_restorable_time")
    lrt_age = _age(now, lrt) if lrt else None
    if lrt_age is None:
        problems.append("the instance reports no latest restorable time: check that automated backups run")
    else:
        parts.append("latest restorable time %s, %.0f s ago (objective %.0f s)" % (
            iso(parse_time(lrt)), lrt_age, float(objective)))
        if lrt_age > float(objective):
            problems.append("the latest restorable time is %.0f s old, over the RPO objective of %.0f s: the "
                            "instance's transaction logs are not reaching its backups; check the instance's events "
                            "(aws rds describe-events) and its storage, and open an AWS support case if it stays"
                            % (lrt_age, float(objective)))
    good = [s for s in (snapshots or []) if s.get("status") == "available" and s.get("snapshot_create_time")]
    newest = max(good, key=lambda s: parse_time(s["snapshot_create_time"])) if good else None
    snap_age = _age(now, newest["snapshot_create_time"]) if newest else None
    if newest is None:
        problems.append("no available snapshot of %s: take one (aws rds create-db-snapshot) and check the backup "
                        "window" % instance)
    else:
        parts.append("newest snapshot %s, %.0f s old" % (newest["db_snapshot_identifier"], snap_age))
        if snap_age > float(max_age):
            problems.append("the newest snapshot is %.0f s old, over %.0f s: the daily backup is not running; check "
                            "the backup window and take a snapshot (aws rds create-db-snapshot)"
                            % (snap_age, float(max_age)))
    msg = "; ".join(parts)
    if problems:
        msg = (msg + ": " if msg else "") + "; ".join(problems)
    return {"ok": not problems, "seconds": lrt_age, "newest": newest["db_snapshot_identifier"] if newest else None,
            "snapshot_seconds": snap_age, "latest_restorable_time": lrt, "message": msg}


def recovery_region_readiness(keys, prefix, snapshots, now, max_age, bucket, region):
    problems, parts = [], []
    ids = backup_ids(keys or [], prefix)
    dump = ids[0] if ids else None
    dump_age = _age(now, backup_id_time(dump)) if dump else None
    where = "s3://%s/%s/ (%s)" % (bucket, prefix.rstrip("/"), region)
    if dump is None:
        problems.append("no complete dump copy in %s: a regional outage would leave no dump to restore; turn on "
                        "S3 replication of the backup bucket to it (or copy the newest backup: aws s3 sync) and "
                        "check the replication status" % where)
    else:
        parts.append("newest dump copy %s in %s, %.0f s old" % (dump, where, dump_age))
        if dump_age > float(max_age):
            problems.append("the newest dump copy in %s is %.0f s old, over %.0f s: replication has stopped; check "
                            "the bucket's replication rule and its failed-replication metrics" % (
                                region, dump_age, float(max_age)))
    snap = snap_age = None
    if snapshots is not None:
        good = [s for s in snapshots if s.get("status") == "available" and s.get("snapshot_create_time")]
        newest = max(good, key=lambda s: parse_time(s["snapshot_create_time"])) if good else None
        if newest is None:
            problems.append("no RDS snapshot copy in %s: copy the newest snapshot (aws rds copy-db-snapshot "
                            "--source-region ...) and automate the copy" % region)
        else:
            snap, snap_age = newest["db_snapshot_identifier"], _age(now, newest["snapshot_create_time"])
            parts.append("newest snapshot copy %s in %s, %.0f s old" % (snap, region, snap_age))
            if snap_age > float(max_age):
                problems.append("the newest RDS snapshot copy in %s is %.0f s old, over %.0f s: the cross-region "
                                "copy has stopped; copy the newest snapshot (aws rds copy-db-snapshot) and check the "
                                "automation that copies them" % (region, snap_age, float(max_age)))
    msg = "; ".join(parts)
    if problems:
        msg = (msg + ": " if msg else "") + "; ".join(problems)
    return {"ok": not problems, "dump": dump, "dump_seconds": dump_age, "snapshot": snap,
            "snapshot_seconds": snap_age, "message": msg}


def route53_readiness(state, health_check):
    state = state or {}
    record = state.get("record", "?")
    if not state.get("answer"):
        return {"ok": False, "health_check": None,
                "message": "no PRIMARY failover record %s could be read: check dr_route53_zone / dr_route53_record "
                           "and that the records exist (terraform)" % record}
    if not state.get("secondary_answer"):
        return {"ok": False, "health_check": None,
                "message": "failover record %s has no SECONDARY record: Route53 has nowhere to fail over to; create "
                           "it pointing at the recovery region's load balancer (terraform)" % record}
    hc = state.get("health_check")
    if not hc:
        return {"ok": False, "health_check": None,
                "message": "the PRIMARY failover record %s has no health check attached: Route53 will never fail "
                           "over on its own; attach the primary's health check to it (terraform, or aws route53 "
                           "change-resource-record-sets with HealthCheckId)" % record}
    if not health_check:
        return {"ok": False, "health_check": hc,
                "message": "the PRIMARY failover record %s names health check %s, which does not exist: create the "
                           "health check and attach it to the record" % (record, hc)}
    cfg = health_check.get("health_check_config") or {}
    return {"ok": True, "health_check": hc,
            "message": "%s: PRIMARY %s with health check %s (%s %s%s), SECONDARY %s" % (
                record, state["answer"], hc, cfg.get("type", "?"), cfg.get("fully_qualified_domain_name", "")
                or cfg.get("ip_address", ""), cfg.get("resource_path", "") or "", state["secondary_answer"])}


class FilterModule:
    def filters(self):
        return {"archive_rpo": archive_rpo, "backup_age": backup_age, "rds_readiness": rds_readiness,
                "recovery_region_readiness": recovery_region_readiness, "route53_readiness": route53_readiness}

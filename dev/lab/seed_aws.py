"""Seed the lab's AWS (moto) with what production and the DR region look like. Idempotent.

Run after dev/lab/services/aws_server.py answers:
    .venv/bin/python dev/lab/seed_aws.py --endpoint http://127.0.0.1:55000 --lab-dir .lab

Every step looks before it creates: a second run creates nothing and prints "exists" for each item.
The ids of what exists are written to <lab-dir>/aws_seed.json (instance ids, node DNS names, snapshot ids, ...).
See docs/lab/aws.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PRIMARY = "us-east-1"
DR = "us-west-2"
ACCOUNT_HINT = "123456789012"  # moto's default account for the access key "testing"
PROJECT = "ag-botkit"
DB_ID = "ag-botkit-production-timescaledb"
DB_NAME = "ag_botkit"
DB_USER = "agbot"
CLUSTER = "ag-botkit-production-eks"
NODEGROUP = "general"
K8S_VERSION = "1.29"
BUCKET = "ag-botkit-backups"
DR_BUCKET = "ag-botkit-backups-dr"
# pgBackRest's S3 repository in the lab (docs/pgbackrest_repository.md), reached through the AWS server's TLS listener.
# No default encryption on purpose: every object's SSE-KMS must come from pgBackRest's repo1-s3-kms-key-id (the
# tests read it back with head-object); a bucket default would hide a missing header. No versioning: moto keeps
# every version in memory, and expire deletes.
PGBACKREST_BUCKET = "ag-botkit-pgbackrest"
KMS_ALIAS = "alias/ag-botkit-backups"
DR_KMS_ALIAS = "alias/ag-botkit-backups-dr"
SIGNING_ALIAS = "alias/ag-botkit-backup-signing"  # asymmetric: signs each backup's manifest (issue 9)
ZONE = "ag-botkit.example.com"
API_RECORD = f"api.{ZONE}"
PRIMARY_LB = "ag-botkit-production-alb-1234567890.us-east-1.elb.amazonaws.com"
DR_LB = "ag-botkit-dr-alb-0987654321.us-west-2.elb.amazonaws.com"
SECRET_PREFIX = "ag-botkit/production"
SEED_TAG = {"Key": "lab:seed", "Value": "true"}
COMMON_TAGS = {"Project": PROJECT, "Environment": "production", "ManagedBy": "terraform"}

VPCS = {
    PRIMARY: {"name": "ag-botkit-production-vpc", "cidr": "10.0.0.0/16",
              "subnets": [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b"), ("10.0.3.0/24", "us-east-1c")],
              "db_subnet_group": "ag-botkit-production-db-subnets"},
    DR: {"name": "ag-botkit-dr-vpc", "cidr": "10.1.0.0/16",
         "subnets": [("10.1.1.0/24", "us-west-2a"), ("10.1.2.0/24", "us-west-2b"), ("10.1.3.0/24", "us-west-2c")],
         "db_subnet_group": "ag-botkit-dr-db-subnets"},
}
# the EKS worker nodes: fixed private IPs so their DNS names (= Kubernetes node names) are known in advance
NODE_IPS = ["10.0.1.10", "10.0.2.10", "10.0.3.10"]

SECRET_KEYS = ("db_password", "kill_switch_token", "exchange_api_key", "exchange_api_secret",
               "slack_webhook_token", "pagerduty_routing_key", "statuspage_api_key")


def _tags(extra: dict[str, str] | None = None, style: str = "KeyValue") -> list[dict[str, str]]:
    merged = {**COMMON_TAGS, SEED_TAG["Key"]: SEED_TAG["Value"], **(extra or {})}
    if style == "keyvalue_lower":
        return [{"key": k, "value": v} for k, v in merged.items()]
    if style == "TagKey":
        return [{"TagKey": k, "TagValue": v} for k, v in merged.items()]
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def _random_value(length: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if "postgres" not in value.lower():
            return value


def load_secrets(lab_dir: Path) -> dict[str, str]:
    """<lab-dir>/secrets.json; generated (random, never 'postgres') when missing, missing keys added."""
    path = lab_dir / "secrets.json"
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text() or "{}")
    missing = [k for k in SECRET_KEYS if not data.get(k)]
    if missing:
        for key in missing:
            data[key] = _random_value(40 if key == "exchange_api_secret" else 32)
        lab_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".secrets.json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    for key, value in data.items():
        if "postgres" in str(value).lower():
            raise SystemExit(f"secrets.json: {key} contains the word 'postgres' (Ansible masks it everywhere)")
    return data


class Seeder:
    def __init__(self, endpoint: str, lab_dir: Path) -> None:
        self.endpoint = endpoint
        self.lab_dir = lab_dir
        self.created: list[str] = []
        self.existing: list[str] = []
        self.updated: list[str] = []
        self.state: dict[str, Any] = {"endpoint": endpoint, "primary_region": PRIMARY, "dr_region": DR}
        self._clients: dict[tuple[str, str], Any] = {}
        self.secrets = load_secrets(lab_dir)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service, region_name=region, endpoint_url=self.endpoint,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                config=Config(retries={"mode": "standard", "max_attempts": 8}))
        return self._clients[key]

    def note(self, created: bool, what: str) -> None:
        (self.created if created else self.existing).append(what)

    # ----------------------------------------------------------------------------------------------- network
    def vpc(self, region: str) -> dict[str, Any]:
        spec = VPCS[region]
        ec2 = self.client("ec2", region)
        found = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [spec["name"]]}])["Vpcs"]
        if found:
            vpc_id = found[0]["VpcId"]
            self.note(False, f"{region} vpc {spec['name']}")
        else:
            vpc_id = ec2.create_vpc(CidrBlock=spec["cidr"], TagSpecifications=[{
                "ResourceType": "vpc", "Tags": _tags({"Name": spec["name"]})}])["Vpc"]["VpcId"]
            self.note(True, f"{region} vpc {spec['name']}")
        subnet_ids = []
        existing = {s["CidrBlock"]: s["SubnetId"] for s in
                    ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]}
        for cidr, az in spec["subnets"]:
            if cidr in existing:
                subnet_ids.append(existing[cidr])
                self.note(False, f"{region} subnet {cidr}")
                continue
            name = f"{spec['name'].removesuffix('-vpc')}-private-{az[-1]}"
            subnet_ids.append(ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=az, TagSpecifications=[{
                "ResourceType": "subnet", "Tags": _tags({"Name": name})}])["Subnet"]["SubnetId"])
            self.note(True, f"{region} subnet {cidr}")
        sg_name = f"{spec['name'].removesuffix('-vpc')}-db"
        sgs = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                    {"Name": "group-name", "Values": [sg_name]}])["SecurityGroups"]
        if sgs:
            sg_id = sgs[0]["GroupId"]
            self.note(False, f"{region} security group {sg_name}")
        else:
            sg_id = ec2.create_security_group(GroupName=sg_name, Description="ag-botkit database", VpcId=vpc_id,
                                              TagSpecifications=[{"ResourceType": "security-group",
                                                                  "Tags": _tags({"Name": sg_name})}])["GroupId"]
            ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": spec["cidr"]}]}])
            self.note(True, f"{region} security group {sg_name}")
        rds = self.client("rds", region)
        group = spec["db_subnet_group"]
        try:
            rds.describe_db_subnet_groups(DBSubnetGroupName=group)
            self.note(False, f"{region} db subnet group {group}")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "DBSubnetGroupNotFoundFault":
                raise
            rds.create_db_subnet_group(DBSubnetGroupName=group, DBSubnetGroupDescription=f"{PROJECT} database subnets",
                                       SubnetIds=subnet_ids, Tags=_tags())
            self.note(True, f"{region} db subnet group {group}")
        out = {"vpc_id": vpc_id, "subnet_ids": subnet_ids, "db_security_group_id": sg_id, "db_subnet_group": group}
        self.state.setdefault("regions", {}).setdefault(region, {}).update(out)
        return out

    # ---------------------------------------------------------------------------------------------------- KMS
    def kms_key(self, region: str, alias: str, description: str) -> str:
        kms = self.client("kms", region)
        aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        if aliases.get(alias):
            key_id = aliases[alias]
            self.note(False, f"{region} kms {alias}")
        else:
            key_id = kms.create_key(Description=description, KeyUsage="ENCRYPT_DECRYPT",
                                    Tags=_tags(style="TagKey"))["KeyMetadata"]["KeyId"]
            kms.enable_key_rotation(KeyId=key_id)
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
            self.note(True, f"{region} kms {alias}")
        arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        self.state.setdefault("regions", {}).setdefault(region, {})["kms_key_arn"] = arn
        self.state["regions"][region]["kms_alias"] = alias
        return arn

    def kms_signing_key(self, region: str, alias: str) -> str:
        """The asymmetric key (ECC_NIST_P256, SIGN_VERIFY) that signs backup manifests."""
        kms = self.client("kms", region)
        aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        if aliases.get(alias):
            key_id = aliases[alias]
            self.note(False, f"{region} kms {alias}")
        else:
            key_id = kms.create_key(Description="ag-botkit backup manifest signing", KeyUsage="SIGN_VERIFY",
                                    KeySpec="ECC_NIST_P256", Tags=_tags(style="TagKey"))["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
            self.note(True, f"{region} kms {alias}")
        arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        self.state.setdefault("regions", {}).setdefault(region, {})["signing_key_arn"] = arn
        return arn

    # ----------------------------------------------------------------------------------------------------- S3
    def bucket(self, region: str, name: str, kms_arn: str, plain: bool = False) -> None:
        s3 = self.client("s3", region)
        try:
            s3.head_bucket(Bucket=name)
            self.note(False, f"{region} s3 bucket {name}")
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": name}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
            self.note(True, f"{region} s3 bucket {name}")
        if plain:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags()})
            return
        if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        try:
            rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError:
            rules = []
        if not rules or rules[0]["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID") != kms_arn:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_arn},
                "BucketKeyEnabled": True}]})
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags()})
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [
            {"ID": "expire-noncurrent-90d", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}]})
        self.state.setdefault("regions", {}).setdefault(region, {})["bucket"] = name

    # ---------------------------------------------------------------------------------------------------- RDS
    def db_instance(self, kms_arn: str) -> dict[str, Any]:
        rds = self.client("rds", PRIMARY)
        try:
            db = rds.describe_db_instances(DBInstanceIdentifier=DB_ID)["DBInstances"][0]
            self.note(False, f"{PRIMARY} rds instance {DB_ID}")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "DBInstanceNotFound":
                raise
            net = self.state["regions"][PRIMARY]
            db = rds.create_db_instance(
                DBInstanceIdentifier=DB_ID, DBInstanceClass="db.r6g.large", Engine="postgres", EngineVersion="15.7",
                AllocatedStorage=100, StorageType="gp3", DBName=DB_NAME, MasterUsername=DB_USER,
                MasterUserPassword=self.secrets["db_password"], Port=5432, MultiAZ=True,
                DBSubnetGroupName=net["db_subnet_group"], VpcSecurityGroupIds=[net["db_security_group_id"]],
                BackupRetentionPeriod=30, PreferredBackupWindow="03:00-03:30",
                PreferredMaintenanceWindow="sun:04:00-sun:05:00", StorageEncrypted=True, KmsKeyId=kms_arn,
                CopyTagsToSnapshot=True, DeletionProtection=True, PubliclyAccessible=False,
                Tags=_tags({"Name": DB_ID}))["DBInstance"]
            self.note(True, f"{PRIMARY} rds instance {DB_ID}")
        self.state["db_instance"] = {"id": DB_ID, "arn": db["DBInstanceArn"], "engine": db["Engine"],
                                     "engine_version": db.get("EngineVersion"),
                                     "endpoint": db.get("Endpoint", {}).get("Address"),
                                     "backup_retention": db.get("BackupRetentionPeriod")}
        return db

    def primary_snapshots(self) -> list[dict[str, Any]]:
        rds = self.client("rds", PRIMARY)
        snaps = rds.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]
        manual = [s for s in snaps if s["SnapshotType"] == "manual"]
        if manual:
            for s in manual:
                self.note(False, f"{PRIMARY} rds snapshot {s['DBSnapshotIdentifier']}")
        else:
            now = datetime.now(UTC)
            ids = [f"{DB_ID}-manual-{now:%Y%m%d-%H%M}",
                   f"{DB_ID}-pre-deploy-{now:%Y-%m-%d}",
                   f"{DB_ID}-weekly-{now:%Y-w%V}"]
            for snap_id in ids:
                rds.create_db_snapshot(DBInstanceIdentifier=DB_ID, DBSnapshotIdentifier=snap_id,
                                       Tags=_tags({"Name": snap_id}))
                self.note(True, f"{PRIMARY} rds snapshot {snap_id}")
            snaps = rds.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]
        self.state["primary_snapshots"] = [
            {"id": s["DBSnapshotIdentifier"], "arn": s["DBSnapshotArn"], "type": s["SnapshotType"],
             "created": s["SnapshotCreateTime"].isoformat()} for s in snaps]
        return snaps

    def dr_snapshot_copies(self, dr_kms_arn: str) -> None:
        copy_dr_snapshots(self, dr_kms_arn)

    # ------------------------------------------------------------------------------------------------ Route53
    def route53(self) -> None:
        r53 = self.client("route53", PRIMARY)
        zones = [z for z in r53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"] if z["Name"] == ZONE + "."]
        if zones:
            zone_id = zones[0]["Id"].split("/")[-1]
            self.note(False, f"route53 zone {ZONE}")
        else:
            zone_id = r53.create_hosted_zone(Name=ZONE, CallerReference=f"lab-{ZONE}", HostedZoneConfig={
                "Comment": "ag-botkit public zone", "PrivateZone": False})["HostedZone"]["Id"].split("/")[-1]
            self.note(True, f"route53 zone {ZONE}")
        hc_id = None
        for hc in r53.list_health_checks()["HealthChecks"]:
            if hc["HealthCheckConfig"].get("FullyQualifiedDomainName") == PRIMARY_LB:
                hc_id = hc["Id"]
        if hc_id:
            self.note(False, "route53 health check primary")
        else:
            hc_id = r53.create_health_check(CallerReference="lab-ag-botkit-primary-health", HealthCheckConfig={
                "Type": "HTTPS", "FullyQualifiedDomainName": PRIMARY_LB, "Port": 443, "ResourcePath": "/health",
                "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"]
            r53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=hc_id, AddTags=[
                {"Key": "Name", "Value": "ag-botkit-production-api"}, *_tags()])
            self.note(True, "route53 health check primary")
        wanted = {
            "primary": {"Name": API_RECORD + ".", "Type": "CNAME", "SetIdentifier": "primary", "Failover": "PRIMARY",
                        "TTL": 60, "ResourceRecords": [{"Value": PRIMARY_LB}], "HealthCheckId": hc_id},
            "secondary": {"Name": API_RECORD + ".", "Type": "CNAME", "SetIdentifier": "secondary",
                          "Failover": "SECONDARY", "TTL": 60, "ResourceRecords": [{"Value": DR_LB}]},
        }
        have = {r.get("SetIdentifier"): r for r in r53.list_resource_record_sets(HostedZoneId=zone_id)[
            "ResourceRecordSets"] if r["Name"] == API_RECORD + "."}
        changes = []
        for ident, record in wanted.items():
            if ident in have:
                self.note(False, f"route53 record {API_RECORD} {record['Failover']}")
            else:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
                self.note(True, f"route53 record {API_RECORD} {record['Failover']}")
        if changes:
            r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                "Comment": "ag-botkit api failover", "Changes": changes})
        self.state["route53"] = {"zone": ZONE, "zone_id": zone_id, "record": API_RECORD, "health_check_id": hc_id,
                                 "primary_target": PRIMARY_LB, "secondary_target": DR_LB}

    # -------------------------------------------------------------------------------------------------- secrets
    def secret_values(self) -> dict[str, str]:
        s = self.secrets
        return {
            f"{SECRET_PREFIX}/db-password": s["db_password"],
            f"{SECRET_PREFIX}/kill-switch-token": s["kill_switch_token"],
            f"{SECRET_PREFIX}/exchange-api-keys": json.dumps(
                {"api_key": s["exchange_api_key"], "api_secret": s["exchange_api_secret"]}),
            f"{SECRET_PREFIX}/dr-credentials": json.dumps({
                "db_username": DB_USER, "db_password": s["db_password"], "kill_switch_token": s["kill_switch_token"],
                "exchange_api_key": s["exchange_api_key"], "exchange_api_secret": s["exchange_api_secret"]}),
        }

    def secrets_manager(self) -> None:
        sm = self.client("secretsmanager", PRIMARY)
        names = []
        for name, value in self.secret_values().items():
            names.append(name)
            try:
                desc = sm.describe_secret(SecretId=name)
                current = sm.get_secret_value(SecretId=name)["SecretString"]
                if current != value:
                    sm.put_secret_value(SecretId=name, SecretString=value)
                    self.updated.append(f"{PRIMARY} secret {name} (value from secrets.json)")
                else:
                    self.note(False, f"{PRIMARY} secret {name}")
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
                sm.create_secret(Name=name, SecretString=value, Description=f"ag-botkit production: {name}",
                                 Tags=_tags(), AddReplicaRegions=[{"Region": DR}])
                desc = sm.describe_secret(SecretId=name)
                self.note(True, f"{PRIMARY} secret {name} (+ replica {DR})")
            if not any(r.get("Region") == DR for r in desc.get("ReplicationStatus", [])):
                sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": DR}],
                                               ForceOverwriteReplicaSecret=True)
                self.updated.append(f"{DR} secret replica {name}")
        self.state["secrets"] = {"names": names, "replica_region": DR,
                                 "values_from": str(self.lab_dir / "secrets.json")}

    # -------------------------------------------------------------------------------------------------- SSM
    def ssm_parameters(self) -> None:
        db = self.state.get("db_instance", {})
        params = {
            PRIMARY: {
                "/ag-botkit/production/region": PRIMARY,
                "/ag-botkit/production/db/instance-id": DB_ID,
                "/ag-botkit/production/db/endpoint": db.get("endpoint") or "",
                "/ag-botkit/production/db/name": DB_NAME,
                "/ag-botkit/production/db/username": DB_USER,
                "/ag-botkit/production/eks/cluster-name": CLUSTER,
                "/ag-botkit/production/backup/bucket": BUCKET,
                "/ag-botkit/production/backup/kms-alias": KMS_ALIAS,
                "/ag-botkit/production/dns/zone": ZONE,
                "/ag-botkit/production/dns/api-record": API_RECORD,
                "/ag-botkit/dr/region": DR,
            },
            DR: {
                "/ag-botkit/dr/region": DR,
                "/ag-botkit/dr/db/instance-id": "ag-botkit-dr-timescaledb",
                "/ag-botkit/dr/db/subnet-group": VPCS[DR]["db_subnet_group"],
                "/ag-botkit/dr/eks/cluster-name": "ag-botkit-dr-eks",
                "/ag-botkit/dr/backup/bucket": DR_BUCKET,
                "/ag-botkit/dr/backup/kms-alias": DR_KMS_ALIAS,
            },
        }
        for region, items in params.items():
            ssm = self.client("ssm", region)
            for name, raw in items.items():
                value = raw or "-"
                try:
                    current = ssm.get_parameter(Name=name)["Parameter"]["Value"]
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "ParameterNotFound":
                        raise
                    current = None
                if current == value:
                    self.note(False, f"{region} ssm {name}")
                    continue
                ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=current is not None)
                if current is None:
                    ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name, Tags=_tags())
                    self.note(True, f"{region} ssm {name}")
                else:
                    self.updated.append(f"{region} ssm {name}")
        self.state["ssm"] = {r: sorted(p) for r, p in params.items()}

    # ------------------------------------------------------------------------------------------ EC2 + EKS
    def ec2_nodes(self) -> None:
        ec2 = self.client("ec2", PRIMARY)
        running = ec2.describe_instances(Filters=[
            {"Name": "tag:eks:cluster-name", "Values": [CLUSTER]},
            {"Name": "tag:eks:nodegroup-name", "Values": [NODEGROUP]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        have = {i["PrivateIpAddress"]: i for r in running["Reservations"] for i in r["Instances"]}
        subnets = self.state["regions"][PRIMARY]["subnet_ids"]
        image = self._ami(ec2)
        for idx, ip in enumerate(NODE_IPS):
            if ip in have:
                self.note(False, f"{PRIMARY} ec2 node {ip}")
                continue
            ec2.run_instances(
                ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=subnets[idx],
                PrivateIpAddress=ip, TagSpecifications=[{"ResourceType": "instance", "Tags": _tags({
                    "Name": f"{CLUSTER}-{NODEGROUP}-node", "eks:cluster-name": CLUSTER, "eks:nodegroup-name": NODEGROUP,
                    f"kubernetes.io/cluster/{CLUSTER}": "owned"})}])
            self.note(True, f"{PRIMARY} ec2 node {ip}")
        running = ec2.describe_instances(Filters=[
            {"Name": "tag:eks:cluster-name", "Values": [CLUSTER]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        nodes = []
        for r in running["Reservations"]:
            for i in r["Instances"]:
                nodes.append({"instance_id": i["InstanceId"], "private_ip": i["PrivateIpAddress"],
                              "private_dns_name": i.get("PrivateDnsName"),
                              "availability_zone": i["Placement"]["AvailabilityZone"],
                              "provider_id": f"aws:///{i['Placement']['AvailabilityZone']}/{i['InstanceId']}"})
        self.state["eks_nodes"] = sorted(nodes, key=lambda n: n["private_ip"])

    @staticmethod
    def _ami(ec2: Any) -> str:
        images = ec2.describe_images(Owners=["amazon"])["Images"]
        for img in images:
            if "amzn2" in (img.get("Name") or "") or "eks" in (img.get("Name") or "").lower():
                return img["ImageId"]
        return images[0]["ImageId"] if images else "ami-12c6146b"

    def eks(self) -> None:
        eks = self.client("eks", PRIMARY)
        subnets = self.state["regions"][PRIMARY]["subnet_ids"]
        role = f"arn:aws:iam::{ACCOUNT_HINT}:role/{CLUSTER}-cluster-role"
        try:
            cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
            self.note(False, f"{PRIMARY} eks cluster {CLUSTER}")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            cluster = eks.create_cluster(name=CLUSTER, version=K8S_VERSION, roleArn=role, resourcesVpcConfig={
                "subnetIds": subnets, "securityGroupIds": [], "endpointPublicAccess": True,
                "endpointPrivateAccess": True}, tags={**COMMON_TAGS, "lab:seed": "true"})["cluster"]
            self.note(True, f"{PRIMARY} eks cluster {CLUSTER}")
        if NODEGROUP in eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"]:
            self.note(False, f"{PRIMARY} eks nodegroup {NODEGROUP}")
        else:
            eks.create_nodegroup(
                clusterName=CLUSTER, nodegroupName=NODEGROUP, version=K8S_VERSION,
                releaseVersion=f"{K8S_VERSION}.3-20240514", nodeRole=f"arn:aws:iam::{ACCOUNT_HINT}:role/{CLUSTER}-node",
                subnets=subnets, instanceTypes=["m5.large"], amiType="AL2_x86_64", capacityType="ON_DEMAND",
                diskSize=50, scalingConfig={"minSize": 3, "maxSize": 6, "desiredSize": 3},
                updateConfig={"maxUnavailable": 1}, labels={"workload": "general"},
                tags={**COMMON_TAGS, "lab:seed": "true"})
            self.note(True, f"{PRIMARY} eks nodegroup {NODEGROUP}")
        self.state["eks"] = {"cluster": CLUSTER, "nodegroup": NODEGROUP, "endpoint": cluster.get("endpoint"),
                             "version": cluster.get("version"), "arn": cluster.get("arn")}

    # ------------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        self.vpc(PRIMARY)
        self.vpc(DR)
        kms_arn = self.kms_key(PRIMARY, KMS_ALIAS, "ag-botkit backups (database, kubernetes, terraform state)")
        dr_kms_arn = self.kms_key(DR, DR_KMS_ALIAS, "ag-botkit backups, DR region")
        self.kms_signing_key(PRIMARY, SIGNING_ALIAS)
        self.bucket(PRIMARY, BUCKET, kms_arn)
        self.bucket(DR, DR_BUCKET, dr_kms_arn)
        self.bucket(PRIMARY, PGBACKREST_BUCKET, kms_arn, plain=True)
        self.db_instance(kms_arn)
        self.primary_snapshots()
        self.dr_snapshot_copies(dr_kms_arn)
        self.route53()
        self.secrets_manager()
        self.ssm_parameters()
        self.ec2_nodes()
        self.eks()
        self.state["seeded_at"] = datetime.now(UTC).isoformat()
        write_state(self.lab_dir, self.state)
        return {"created": self.created, "updated": self.updated, "existing": self.existing}


def dr_copy_id(source_id: str) -> str:
    """Name of the DR-region copy of a primary snapshot (automated ids 'rds:...' lose the prefix)."""
    return f"{source_id.removeprefix('rds:')}-dr"


def copy_dr_snapshots(seeder: Seeder, dr_kms_arn: str | None = None) -> list[str]:
    """Cross-region copies (copy_db_snapshot with SourceRegion) of every primary snapshot that has none in DR."""
    src = seeder.client("rds", PRIMARY)
    dst = seeder.client("rds", DR)
    if dr_kms_arn is None:
        dr_kms_arn = seeder.client("kms", DR).describe_key(KeyId=DR_KMS_ALIAS)["KeyMetadata"]["Arn"]
    have = {s["DBSnapshotIdentifier"] for s in dst.describe_db_snapshots()["DBSnapshots"]}
    made = []
    for snap in src.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]:
        target = dr_copy_id(snap["DBSnapshotIdentifier"])
        if target in have:
            seeder.note(False, f"{DR} rds snapshot copy {target}")
            continue
        dst.copy_db_snapshot(SourceDBSnapshotIdentifier=snap["DBSnapshotArn"], TargetDBSnapshotIdentifier=target,
                             KmsKeyId=dr_kms_arn, SourceRegion=PRIMARY, Tags=_tags({
                                 "Name": target, "source-region": PRIMARY,
                                 "source-snapshot": snap["DBSnapshotIdentifier"], "lab:dr-copy": "true"}))
        seeder.note(True, f"{DR} rds snapshot copy {target}")
        made.append(target)
    seeder.state["dr_snapshots"] = [
        {"id": s["DBSnapshotIdentifier"], "arn": s["DBSnapshotArn"], "created": s["SnapshotCreateTime"].isoformat()}
        for s in dst.describe_db_snapshots(DBInstanceIdentifier=DB_ID)["DBSnapshots"]]
    return made


def write_state(lab_dir: Path, state: dict[str, Any]) -> None:
    lab_dir.mkdir(parents=True, exist_ok=True)
    path = lab_dir / "aws_seed.json"
    old = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    old.update(state)
    tmp = path.with_name(".aws_seed.json.tmp")
    tmp.write_text(json.dumps(old, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def wait_ready(endpoint: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/_lab/ready", timeout=2) as resp:  # noqa: S310 - lab http
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"AWS lab server at {endpoint} did not answer /_lab/ready within {timeout:.0f}s")
        time.sleep(0.2)


def seed(endpoint: str, lab_dir: Path) -> dict[str, Any]:
    return Seeder(endpoint, lab_dir).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed the lab's moto server (idempotent).")
    parser.add_argument("--endpoint", default=os.environ.get("AWS_URL", "http://127.0.0.1:55000"))
    parser.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ".lab")))
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the server to answer")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    start = time.monotonic()
    wait_ready(args.endpoint, args.wait)
    result = seed(args.endpoint, args.lab_dir.resolve())
    elapsed = time.monotonic() - start
    if args.json:
        print(json.dumps({**result, "seconds": round(elapsed, 2)}, indent=2))
    else:
        for item in result["created"]:
            print(f"  created  {item}")
        for item in result["updated"]:
            print(f"  updated  {item}")
        print(f"seed_aws: {len(result['created'])} created, {len(result['updated'])} updated, "
              f"{len(result['existing'])} already there ({elapsed:.1f}s); ids in {args.lab_dir / 'aws_seed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

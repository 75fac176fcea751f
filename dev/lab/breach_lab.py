"""Set the lab up for the security-breach scenario (playbooks/security_breach.yml), and take it down again.

    .venv/bin/python dev/lab/breach_lab.py setup      # fresh: namespace, role, secret, nodes; prints JSON
    .venv/bin/python dev/lab/breach_lab.py teardown   # removes them, resets the kill switch

The breach scenario rotates a database password and isolates nodes, so it runs on things of its own and leaves
the shared lab (the `agbot` role, namespace `ag-botkit`, the seeded EC2 nodes) alone:

* PostgreSQL role `agbot_breach` (LOGIN, a random password) - the rotated database password;
* Secrets Manager secret `ag-botkit/lab/breach-db` = {"username": "agbot_breach", "password": ...};
* namespace `ag-botkit-breach` in the production cluster: Secret `breach-db` (DATABASE_PASSWORD, KILL_SWITCH_TOKEN),
  Secret `breach-other` (rotated by nobody), ConfigMap `breach-config`, Deployment `bot` (the minibot image, pod
  mode, halted from the start so it writes no orders, Ready only while it logs in with the Secret's password),
  Deployment `feed` (rtds-client; reads no Secret, so a rotation must not restart it);
* EC2 instances whose private DNS names are the emulator's node names (ip-10-0-1-1.ec2.internal, ...: on EKS a
  node's name is its instance's private DNS name; the seeded instances have other addresses), in the Auto Scaling
  group `ag-botkit-breach-lab-nodes` (moto's EKS node groups have no real Auto Scaling group);
* the evidence bucket `ag-botkit-evidence-lab` with object lock (as production must have it before an incident);
* IAM user `lab-intruder` with an access key, which reads the secret and lists buckets: the activity review must
  flag it (the lab's own calls use the access key `testing`).

The original password is written to <lab-dir>/breach.json (mode 0600) for the tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ag-botkit-breach"
ROLE = "agbot_breach"
SECRET_ID = "ag-botkit/lab/breach-db"
ASG = "ag-botkit-breach-lab-nodes"
NODE_IPS = {"ip-10-0-1-1.ec2.internal": ("10.0.1.1", 0), "ip-10-0-2-2.ec2.internal": ("10.0.2.2", 1),
            "ip-10-0-3-3.ec2.internal": ("10.0.3.3", 2)}
INTRUDER = "lab-intruder"
EVIDENCE_BUCKET = "ag-botkit-evidence-lab"  # inventories/lab: dr_evidence_bucket


def _pw(n: int = 24) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


class Lab:
    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir
        self.info = json.loads((lab_dir / "lab.json").read_text())
        self.secrets = json.loads(Path(self.info["secrets_file"]).read_text())
        env = self.info["env"]
        os.environ.update({k: env[k] for k in ("AWS_URL", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION",
                                                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        self.env = env
        self.k8s_url = f"http://127.0.0.1:{self.info['ports']['k8s']}"

    # ------------------------------------------------------------------------------------------ clients
    def aws(self, name: str, **kw: Any) -> Any:
        import boto3

        return boto3.client(name, region_name="us-east-1", endpoint_url=self.env["AWS_URL"], **kw)

    def pg(self, dbname: str = "ag_botkit") -> Any:
        import psycopg

        return psycopg.connect(host=self.env["PGHOST"], port=int(self.env["PGPORT"]), user=self.env["PGUSER"],
                               password=self.secrets["db_password"], dbname=dbname, autocommit=True)

    def k8s(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.k8s_url + path, data=data, method=method,  # noqa: S310 - loopback
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback lab URL
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return {}
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from e

    # ------------------------------------------------------------------------------------------ pieces
    def namespace(self, password: str) -> None:
        ns = f"/api/v1/namespaces/{NAMESPACE}"
        self.k8s("DELETE", ns, ok=(404,))
        for _ in range(100):
            try:
                self.k8s("GET", ns)
            except RuntimeError:
                break
            time.sleep(0.2)
        self.k8s("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": NAMESPACE}})
        b64 = lambda v: base64.b64encode(v.encode()).decode()  # noqa: E731
        self.k8s("POST", f"{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "breach-db"},
                                           "data": {"DATABASE_PASSWORD": b64(password),
                                                    "KILL_SWITCH_TOKEN": b64(_pw())}})
        self.k8s("POST", f"{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "breach-other"},
                                           "data": {"UNRELATED": b64(_pw())}})
        self.k8s("POST", f"{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "breach-config"},
                                              "data": {"DATABASE_HOST": "127.0.0.1",
                                                       "DATABASE_PORT": self.env["PGPORT"],
                                                       "DATABASE_NAME": "ag_botkit", "DATABASE_USER": ROLE,
                                                       "RTDS_URL": self.env["LAB_RTDS_URL"],
                                                       "KILL_SWITCH_INITIAL_STATE": "halted"}})

        def deployment(name: str, image: str, port: int, env: list[dict[str, Any]]) -> dict[str, Any]:
            labels = {"app.kubernetes.io/name": name}
            return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                    "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{
                            "name": name, "image": image, "ports": [{"name": "http", "containerPort": port}],
                            "envFrom": [{"configMapRef": {"name": "breach-config"}}], "env": env,
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}}}]}}}}

        secret_env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": "breach-db", "key": k}}}
                      for k in ("DATABASE_PASSWORD", "KILL_SWITCH_TOKEN")]
        self.k8s("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                 deployment("bot", "ghcr.io/ag-botkit/minibot:1.4.2", 9091, secret_env))
        self.k8s("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                 deployment("feed", "ghcr.io/ag-botkit/rtds-client:1.4.2", 8080, []))
        self.wait_available(["bot", "feed"])

    def wait_available(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for n in names:
                d = self.k8s("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{n}")
                if (d.get("status") or {}).get("readyReplicas", 0) < 1:
                    waiting.append(n)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployments not available after {timeout} s: {waiting}")
            time.sleep(0.3)

    def role(self, password: str) -> None:
        from psycopg import sql

        with self.pg() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(ROLE),
                                                                                 sql.Literal(password)))

    def secret(self, password: str) -> None:
        sm = self.aws("secretsmanager")
        try:
            sm.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
        except sm.exceptions.ResourceNotFoundException:
            pass
        sm.create_secret(Name=SECRET_ID, SecretString=json.dumps({"username": ROLE, "password": password}),
                         Tags=[{"Key": "lab:scenario", "Value": "security_breach"}])

    def nodes(self) -> list[str]:
        ec2, asg = self.aws("ec2"), self.aws("autoscaling")
        subnets = ec2.describe_subnets(Filters=[{"Name": "cidr-block",
                                                 "Values": ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]}])["Subnets"]
        by_cidr = {s["CidrBlock"]: s["SubnetId"] for s in subnets}
        vpc = subnets[0]["VpcId"]
        default_sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                           {"Name": "group-name", "Values": ["default"]}])
        sg = default_sg["SecurityGroups"][0]["GroupId"]
        found = ec2.describe_instances(Filters=[{"Name": "tag:lab:scenario", "Values": ["security_breach"]},
                                                {"Name": "instance-state-name", "Values": ["running"]}])
        have = {i["PrivateDnsName"]: i for r in found["Reservations"] for i in r["Instances"]}
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ids = []
        for name, (ip, idx) in NODE_IPS.items():
            if name in have:
                inst = have[name]
                ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=inst["NetworkInterfaces"][0]["NetworkInterfaceId"], Groups=[sg])
                ec2.delete_tags(Resources=[inst["InstanceId"]], Tags=[{"Key": "agbotkit.dr/quarantine"},
                                                                      {"Key": "agbotkit.dr/original-security-groups"}])
                ids.append(inst["InstanceId"])
                continue
            cidr = f"10.0.{idx + 1}.0/24"
            # groups on the primary network interface, as EKS launch templates do (moto would otherwise add the
            # instance's launch groups to every listing of the interface's groups)
            inst = ec2.run_instances(ImageId=image, InstanceType="m5.large", MinCount=1, MaxCount=1,
                                     NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": by_cidr[cidr],
                                                         "PrivateIpAddress": ip, "Groups": [sg]}],
                                     TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                         {"Key": "Name", "Value": name},
                                         {"Key": "lab:scenario", "Value": "security_breach"}]}])
            ids.append(inst["Instances"][0]["InstanceId"])
        for g in asg.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])["AutoScalingGroups"]:
            if g["Instances"]:
                asg.detach_instances(AutoScalingGroupName=ASG, InstanceIds=[i["InstanceId"] for i in g["Instances"]],
                                     ShouldDecrementDesiredCapacity=True)
            asg.delete_auto_scaling_group(AutoScalingGroupName=ASG, ForceDelete=True)
        try:
            ec2.create_launch_template(LaunchTemplateName=ASG, LaunchTemplateData={
                "ImageId": image, "InstanceType": "m5.large"})
        except Exception as e:  # noqa: BLE001 - exists from an earlier set-up
            if "AlreadyExists" not in str(e):
                raise
        asg.create_auto_scaling_group(AutoScalingGroupName=ASG, MinSize=0, MaxSize=6, DesiredCapacity=0,
                                      LaunchTemplate={"LaunchTemplateName": ASG, "Version": "$Latest"},
                                      VPCZoneIdentifier=",".join(by_cidr.values()))
        asg.attach_instances(AutoScalingGroupName=ASG, InstanceIds=ids)
        asg.resume_processes(AutoScalingGroupName=ASG)
        asg.set_instance_protection(AutoScalingGroupName=ASG, InstanceIds=ids, ProtectedFromScaleIn=False)
        return ids

    def evidence_bucket(self) -> None:
        s3 = self.aws("s3")
        try:
            s3.create_bucket(Bucket=EVIDENCE_BUCKET, ObjectLockEnabledForBucket=True)
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass

    def intruder(self) -> None:
        iam = self.aws("iam")
        try:
            iam.create_user(UserName=INTRUDER)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        for key in iam.list_access_keys(UserName=INTRUDER)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=INTRUDER, AccessKeyId=key["AccessKeyId"])
        key = iam.create_access_key(UserName=INTRUDER)["AccessKey"]
        import boto3

        session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"],
                                        aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1")
        session.client("secretsmanager", endpoint_url=self.env["AWS_URL"]).get_secret_value(SecretId=SECRET_ID)
        session.client("s3", endpoint_url=self.env["AWS_URL"]).list_buckets()

    def kill_switch_reset(self) -> None:
        import urllib.request

        req = urllib.request.Request(self.env["LAB_MINIBOT_URL"] + "/api/kill-switch/reset", method="POST",  # noqa: S310
                                     data=b'{"reason": "breach lab teardown"}',
                                     headers={"Authorization": f"Bearer {self.secrets['kill_switch_token']}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()  # noqa: S310 - loopback lab URL

    # ------------------------------------------------------------------------------------------ commands
    def setup(self) -> dict[str, Any]:
        password = _pw()
        state = {"namespace": NAMESPACE, "role": ROLE, "secret_id": SECRET_ID, "password": password,
                 "asg": ASG, "intruder": INTRUDER}
        path = self.lab_dir / "breach.json"
        path.write_text(json.dumps(state))
        path.chmod(0o600)
        self.role(password)
        self.secret(password)
        self.evidence_bucket()
        state["instances"] = self.nodes()
        self.namespace(password)
        self.intruder()
        path.write_text(json.dumps(state))
        return {k: v for k, v in state.items() if k != "password"}

    def teardown(self) -> dict[str, Any]:
        self.k8s("DELETE", f"/api/v1/namespaces/{NAMESPACE}", ok=(404,))
        with self.pg() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{ROLE}"')
        sm = self.aws("secretsmanager")
        try:
            sm.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
        except sm.exceptions.ResourceNotFoundException:
            pass
        self.kill_switch_reset()
        (self.lab_dir / "breach.json").unlink(missing_ok=True)
        return {"removed": [NAMESPACE, ROLE, SECRET_ID], "kill_switch": "reset"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["setup", "teardown"])
    parser.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ROOT / ".lab")))
    args = parser.parse_args(argv)
    lab = Lab(args.lab_dir.resolve())
    print(json.dumps(getattr(lab, args.command)()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

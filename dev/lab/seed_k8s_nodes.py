"""Link the production cluster's nodes in the Kubernetes emulator to their EC2 instances in moto.

On EKS a node's spec.providerID is aws:///<zone>/<instance id>; DR plan section 3 reboots a NotReady node through
that link. dev/lab/seed_aws.py creates one instance per node (ids in <lab-dir>/aws_seed.json, eks_nodes, sorted by
private IP); this step patches the emulator's nodes (sorted by name) with those providerIDs and zones.

Run by labctl up after the AWS seed; safe to run again (patches only what differs). The emulator keeps the patch
until it restarts (make lab-up runs this again).

  .venv/bin/python dev/lab/seed_k8s_nodes.py --k8s-url http://127.0.0.1:56443 --lab-dir .lab
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

CLUSTER = "ag-botkit-production-eks"


def call(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/merge-patch+json", "Authorization": "Bearer lab-token"}
    req = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310 - loopback http
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read() or b"{}")


def link(k8s_url: str, lab_dir: Path) -> list[str]:
    seed = json.loads((lab_dir / "aws_seed.json").read_text())
    instances = sorted(seed.get("eks_nodes") or [], key=lambda n: n["private_ip"])
    nodes = sorted(call(f"{k8s_url}/api/v1/nodes?labelSelector=eks.amazonaws.com%2Fnodegroup%3Dgeneral")["items"],
                   key=lambda n: n["metadata"]["name"])
    if len(instances) < len(nodes):
        raise SystemExit(f"{len(nodes)} nodes but {len(instances)} EC2 instances in aws_seed.json: run seed_aws.py")
    done = []
    for node, inst in zip(nodes, instances, strict=False):
        want = inst["provider_id"]
        name = node["metadata"]["name"]
        if (node.get("spec") or {}).get("providerID") != want:
            call(f"{k8s_url}/api/v1/nodes/{name}", "PATCH", {
                "spec": {"providerID": want},
                "metadata": {"labels": {"topology.kubernetes.io/zone": inst["availability_zone"]}}})
        done.append(f"{name} -> {inst['instance_id']}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s-url", required=True)
    ap.add_argument("--lab-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    done = link(args.k8s_url.rstrip("/"), args.lab_dir)
    print(f"{CLUSTER} nodes linked to EC2: " + ", ".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())

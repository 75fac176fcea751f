"""backup.yml backs up the state of the Terraform workspace the region failover applies (dr, in .lab/terraform for
the lab) and fails loudly, saying why, when it cannot (it used to skip it silently). Only the Terraform part runs."""

from __future__ import annotations

import json

import boto3

ONLY_TERRAFORM = {"db_backup_database": False, "db_backup_k8s_resources": False}


def _s3(lab):
    return boto3.client("s3", endpoint_url=lab["env"]["AWS_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_terraform_state_that_cannot_be_read_fails_the_backup(run_playbook, tmp_path):
    proc = run_playbook("playbooks/backup.yml",
                        extra_vars={**ONLY_TERRAFORM, "db_backup_terraform_dir": str(tmp_path / "no-such-config"),
                                    "db_backup_terraform_state_dir": str(tmp_path / "state")})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Terraform state of workspace dr" in out and "could not be backed up" in out, out[-3000:]


def test_the_dr_workspace_state_is_backed_up(run_playbook, lab):
    proc = run_playbook("playbooks/backup.yml", extra_vars=ONLY_TERRAFORM)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    state_file = (lab["lab_dir"] + "/terraform/terraform.tfstate.d/dr/terraform.tfstate")
    keys = [o["Key"] for o in _s3(lab).list_objects_v2(Bucket="ag-botkit-backups", Prefix="terraform/")
            .get("Contents", [])]
    try:
        resources = json.load(open(state_file)).get("resources", [])  # noqa: SIM115
    except FileNotFoundError:
        resources = []
    if resources:
        newest = sorted(k for k in keys if k.startswith("terraform/terraform-state-dr-"))[-1]
        body = json.loads(_s3(lab).get_object(Bucket="ag-botkit-backups", Key=newest)["Body"].read())
        assert len(body["resources"]) == len(resources)
    else:   # nothing applied in the workspace: said, not silently skipped
        assert "has no state yet" in out, out[-3000:]

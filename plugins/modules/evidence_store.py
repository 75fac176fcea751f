#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_store
short_description: Preserve forensic evidence in an S3 bucket with object lock, and prove it reads back
version_added: 0.2.0
description:
  - Uploads local files as evidence objects under O(bucket)/O(prefix)/, each with an object-lock legal hold
    (and, with O(retention_days), a retention period), then reads every object back by its version id and
    compares its sha256 with the file's. Writes C(manifest.json) (key, version id, size, sha256 of every object,
    plus O(references) such as EBS snapshot ids) the same way and reads it back.
  - Fails before writing anything when the bucket does not exist, has versioning off or object lock not enabled,
    and fails when anything written does not read back identical or without its legal hold. A playbook that
    changes things only after this module succeeded never changes anything without preserved evidence.
  - "When O(prefix)/manifest.json already exists (a re-run of the same incident), nothing is uploaded: the existing
    manifest and every object it lists are read back and checked against their sha256 instead. Evidence is the
    state before the first change, so a re-run never overwrites it with a later state."
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
options:
  bucket:
    description: The evidence bucket. It must exist with versioning and object lock enabled.
    type: str
    required: true
  prefix:
    description: Key prefix of this incident's evidence, for example the incident id.
    type: str
    required: true
  src:
    description: Local folder whose files (recursively) are the evidence; keys are O(prefix)/<relative path>.
    type: path
    required: true
  legal_hold:
    description: Put a legal hold on every object (it lasts until someone with C(s3:PutObjectLegalHold) lifts it).
    type: bool
    default: true
  retention_days:
    description: Also set an object-lock retention of this many days (0 means none).
    type: int
    default: 0
  retention_mode:
    description: Object-lock mode of the retention.
    type: str
    choices: [GOVERNANCE, COMPLIANCE]
    default: GOVERNANCE
  collected_by:
    description: Who collected the evidence (chain of custody).
    type: str
    required: true
  references:
    description: Evidence kept elsewhere (EBS snapshot ids, ...), listed in the manifest as they are.
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    description: >-
      Checks the bucket and hashes the files; uploads nothing and reads nothing back. Returns the manifest it would
      write (objects without version ids, RV(verified) 0) and C(changed=true) when it would write.
  diff_mode:
    support: none
    description: No diff.
seealso:
  - name: S3 Object Lock
    description: Legal holds and retention periods.
    link: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html
"""

EXAMPLES = r"""
- name: Preserve the evidence collected in a local folder
  agbotkit.dr.evidence_store:
    bucket: ag-botkit-evidence
    prefix: INC-20250101-000000-abcd
    src: /var/tmp/evidence/INC-20250101-000000-abcd
    collected_by: on-call
  register: evidence
"""

RETURN = r"""
manifest:
  description: The manifest as written (or as found on a re-run).
  returned: always
  type: dict
  contains:
    objects:
      description: One entry per evidence object (key, version_id, size, sha256, legal_hold).
      type: list
      elements: dict
manifest_key:
  description: S3 key of the manifest.
  returned: always
  type: str
manifest_version_id:
  description: Version id of the manifest object (none in check mode).
  returned: always
  type: str
manifest_sha256:
  description: sha256 of the manifest object as read back.
  returned: always
  type: str
verified:
  description: Number of objects read back with matching sha256 (and legal hold, if asked for).
  returned: always
  type: int
reused:
  description: True when the manifest already existed and was verified instead of writing new evidence.
  returned: always
  type: bool
"""

import datetime
import hashlib
import json
import os

from ansible_collections.agbotkit.dr.plugins.module_utils._aws import (
    AWS_ERRORS,
    aws_client,
    aws_module,
    is_boto3_error_code,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, AwsApiError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module

MANIFEST = "manifest.json"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def local_files(src):
    out = []
    for root, _dirs, files in os.walk(src):
        for name in sorted(files):
            path = os.path.join(root, name)
            out.append((os.path.relpath(path, src).replace(os.sep, "/"), path))
    return sorted(out)


class Store:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        # a few quick retries: the evidence step must fail (before any change) in seconds, not hang for minutes
        self.s3 = aws_client(module, "s3", retries=4, delay=1, max_delay=8)
        self.bucket = self.p["bucket"]

    def preflight(self):
        b = self.bucket
        try:
            versioning = self.s3.get_bucket_versioning(Bucket=b, aws_retry=True).get("Status")
        except is_boto3_error_code("NoSuchBucket") as e:
            raise AgbotDrError(f"Evidence bucket {b} does not exist: create it with object lock enabled "
                               "(docs/security_breach.md). Nothing was changed") from e
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            raise AwsApiError(f"Failed to read versioning of evidence bucket {b}; nothing was changed", e) from e
        if versioning != "Enabled":
            raise AgbotDrError(f"Evidence bucket {b} has versioning {versioning or 'off'}: it needs versioning "
                               "and object lock. Nothing was changed")
        try:
            lock = self.s3.get_object_lock_configuration(Bucket=b, aws_retry=True)
            enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except is_boto3_error_code("ObjectLockConfigurationNotFoundError"):
            enabled = False
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            raise AwsApiError(f"Failed to read object lock of evidence bucket {b}; nothing was changed", e) from e
        if not enabled:
            raise AgbotDrError(f"Evidence bucket {b} does not have object lock enabled: evidence could be "
                               "deleted or overwritten. Use a bucket created with object lock. "
                               "Nothing was changed")

    def key(self, name):
        return f"{self.p['prefix'].strip('/')}/{name}"

    def put(self, key, data, metadata):
        kwargs = dict(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata, ContentType="application/octet-stream")
        if self.p["legal_hold"]:
            kwargs["ObjectLockLegalHoldStatus"] = "ON"
        if self.p["retention_days"] > 0:
            kwargs["ObjectLockMode"] = self.p["retention_mode"]
            kwargs["ObjectLockRetainUntilDate"] = (datetime.datetime.now(datetime.timezone.utc)
                                                   + datetime.timedelta(days=self.p["retention_days"]))
        try:
            return self.s3.put_object(aws_retry=True, **kwargs).get("VersionId")
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to write evidence object s3://{self.bucket}/{key}", e) from e

    def read_back(self, key, version_id, want_sha):
        """Fails unless the version reads back with want_sha (and the legal hold, if asked for)."""
        try:
            kwargs = dict(Bucket=self.bucket, Key=key)
            if version_id:
                kwargs["VersionId"] = version_id
            data = self.s3.get_object(aws_retry=True, **kwargs)["Body"].read()
        except AWS_ERRORS as e:
            raise AwsApiError(f"Failed to read back evidence object s3://{self.bucket}/{key}; stop before any change",
                              e) from e
        got = sha256_bytes(data)
        if got != want_sha:
            raise AgbotDrError(f"Evidence object s3://{self.bucket}/{key} reads back with sha256 {got}, "
                               f"expected {want_sha}: the evidence is not preserved; stop before any change")
        if self.p["legal_hold"]:
            try:
                hold = self.s3.get_object_legal_hold(aws_retry=True, **kwargs)["LegalHold"]["Status"]
            except AWS_ERRORS as e:
                raise AwsApiError(f"Failed to read the legal hold of s3://{self.bucket}/{key}", e) from e
            if hold != "ON":
                raise AgbotDrError(f"Evidence object s3://{self.bucket}/{key} has no legal hold")
        return data

    def existing_manifest(self):
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key(MANIFEST), aws_retry=True)
        except is_boto3_error_code(["404", "NoSuchKey", "NotFound"]):
            return None
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            raise AwsApiError(f"Failed to look for an existing manifest under s3://{self.bucket}/{self.p['prefix']}",
                              e) from e
        obj = self.s3.get_object(Bucket=self.bucket, Key=self.key(MANIFEST), aws_retry=True)
        data = obj["Body"].read()
        return json.loads(data), obj.get("VersionId"), sha256_bytes(data)

    def run(self):
        self.preflight()
        found = self.existing_manifest()
        if found is not None:
            manifest, version_id, digest = found
            for entry in manifest.get("objects", []):
                self.read_back(entry["key"], entry.get("version_id"), entry["sha256"])
            return dict(changed=False, reused=True, manifest=manifest, manifest_key=self.key(MANIFEST),
                        manifest_version_id=version_id, manifest_sha256=digest,
                        verified=len(manifest.get("objects", [])))
        files = local_files(self.p["src"])
        if not files:
            raise AgbotDrError(f"No evidence files in {self.p['src']}: nothing to preserve")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = {"incident": self.p["prefix"], "collected-by": self.p["collected_by"], "collected-at": now}
        objects = []
        for rel, path in files:
            with open(path, "rb") as fh:
                data = fh.read()
            digest = sha256_bytes(data)
            entry = {"key": self.key(rel), "size": len(data), "sha256": digest, "legal_hold": self.p["legal_hold"],
                     "version_id": None}
            if not self.module.check_mode:
                entry["version_id"] = self.put(entry["key"], data, dict(meta, sha256=digest))
                self.read_back(entry["key"], entry["version_id"], digest)
            objects.append(entry)
        manifest = {"incident": self.p["prefix"], "bucket": self.bucket, "collected_by": self.p["collected_by"],
                    "created": now, "hash": "sha256", "objects": objects, "references": self.p["references"]}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        digest = sha256_bytes(body)
        version_id = None
        if not self.module.check_mode:
            version_id = self.put(self.key(MANIFEST), body, dict(meta, sha256=digest))
            self.read_back(self.key(MANIFEST), version_id, digest)
        return dict(changed=True, reused=False, manifest=manifest, manifest_key=self.key(MANIFEST),
                    manifest_version_id=version_id, manifest_sha256=digest,
                    verified=0 if self.module.check_mode else len(objects))


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", required=True),
        src=dict(type="path", required=True),
        legal_hold=dict(type="bool", default=True),
        retention_days=dict(type="int", default=0),
        retention_mode=dict(type="str", default="GOVERNANCE", choices=["GOVERNANCE", "COMPLIANCE"]),
        collected_by=dict(type="str", required=True),
        references=dict(type="list", elements="dict", default=[]),
    )
    module = aws_module(argument_spec)
    run_module(module, lambda m, _result: Store(m).run())


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_transfer
short_description: Upload a list of files to S3, or download a list of keys, in one call
version_added: 0.3.0
description:
  - "O(mode=upload): uploads O(src)/<name> to O(bucket)/O(prefix)/<name> for every name of O(files), one at a time,
    in the order given, except that the names listed in O(last) are written after all the others (in the order of
    O(last)). A backup passes its artifacts, then C(manifest.sig), then C(manifest.json) in O(last), so a reader
    never finds a manifest before the artifacts it lists: a failed upload leaves no manifest behind."
  - Every object is written with server-side encryption (O(encryption), SSE-KMS with O(kms_key_id) by default)
    through boto3's managed transfer (multipart above O(multipart_threshold_mb)), with the file's sha256 in its
    metadata (C(x-amz-meta-sha256)).
  - "An object that already holds the file's content is not written again (like C(overwrite: different) of
    M(amazon.aws.s3_object)): same size, same encryption, and the sha256 this module stored, or, for an object
    written by another tool, the MD5 ETag of a single-part upload. C(changed) is true only when something was
    written."
  - "O(mode=download): downloads O(bucket)/O(prefix)/<name> to O(dest)/<name> for every name of O(files), creating
    folders (mode 0700). A file already there is kept only when S3's own single-part ETag (the MD5 S3 computed) is
    the file's MD5; the sha256 in the object's metadata is never trusted for this (an object altered in storage may
    keep it). Under SSE-KMS, AWS's ETag is not an MD5, so every file is downloaded again there. Each file is
    written to a temporary name and renamed into place, so a failed download leaves no partial file under the final
    name."
  - A name that is absolute, contains C(..), a backslash or NUL, or would resolve outside O(src) or O(dest) through a
    symlink is refused before anything is transferred (a backup's list of keys is untrusted input). The module does
    not verify the content against a manifest; it returns the sha256 of every local file (RV(sha256)) and the caller
    compares them with the manifest it trusts.
  - Uses one boto3 client for the whole list. Takes the common AWS options of the action group
    C(agbotkit.dr.aws), so C(module_defaults) for C(group/agbotkit.dr.aws) reaches it.
author:
  - ag-botkit DevOps Team (@ag-botkit)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
options:
  mode:
    description: Upload local files to S3, or download keys to a local folder.
    type: str
    choices: [upload, download]
    required: true
  bucket:
    description: The bucket.
    type: str
    required: true
  prefix:
    description: Key prefix; the key of each name is O(prefix)/<name> (no prefix when empty).
    type: str
    default: ""
  files:
    description:
      - Names relative to O(src) (upload) or O(dest) (download), the same below O(prefix). Forward slashes separate
        folders. Duplicates are transferred once.
    type: list
    elements: str
    required: true
  last:
    description:
      - Upload only. Names of O(files) to write after all the others, in this order (for example
        V(manifest.sig), V(manifest.json)). A name of O(last) that is not in O(files) is ignored.
    type: list
    elements: str
    default: []
  src:
    description: Upload only, required then. The local folder the names are relative to.
    type: path
  dest:
    description: Download only, required then. The local folder the files are written to (created when missing).
    type: path
  encryption:
    description: Upload only. Server-side encryption of every object written.
    type: str
    choices: [aws:kms, AES256]
    default: aws:kms
  kms_key_id:
    description:
      - Upload only, with O(encryption=aws:kms). Id, ARN or alias of the KMS key (the bucket's or the account's
        default key when omitted).
    type: str
  multipart_threshold_mb:
    description: Files at least this large (MiB) are uploaded and downloaded in parts.
    type: int
    default: 8
attributes:
  check_mode:
    support: full
    description: >-
      Reads the objects' metadata and hashes the local files; writes nothing (no object, no file, no folder) and
      returns what would be written in RV(transferred), with C(changed=true) when anything would be.
  diff_mode:
    support: none
    description: No diff.
notes:
  - Permissions needed. Upload - C(s3:PutObject), C(s3:GetObject) (HeadObject) and, with SSE-KMS,
    C(kms:GenerateDataKey) and C(kms:Decrypt) (multipart). Download - C(s3:GetObject) and C(kms:Decrypt).
seealso:
  - module: amazon.aws.s3_object
    description: One object per task, with more modes.
  - name: Protecting data with server-side encryption (SSE-KMS)
    description: How S3 encrypts with a KMS key.
    link: https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html
"""

EXAMPLES = r"""
- name: Upload a backup's artifacts, then its signature, then its manifest (SSE-KMS)
  agbotkit.dr.s3_transfer:
    mode: upload
    bucket: ag-botkit-backups
    prefix: database/20250101T000000Z
    src: /var/backups/ag-botkit/20250101T000000Z
    files: [data/0001.dump, data/0002.dump, manifest.sig, manifest.json]
    last: [manifest.sig, manifest.json]
    kms_key_id: alias/ag-botkit-backups
    region: us-east-1

- name: Download the artifacts a verified manifest lists
  agbotkit.dr.s3_transfer:
    mode: download
    bucket: ag-botkit-backups
    prefix: database/20250101T000000Z
    dest: /var/tmp/restore/20250101T000000Z
    files: "{{ manifest.artifacts.keys() | list }}"
    region: us-east-1
  register: fetched
"""

RETURN = r"""
files:
  description: One entry per name, in the order transferred (for an upload, O(last) at the end).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as given (relative to O(src) or O(dest)).
      type: str
      sample: data/0001.dump
    key:
      description: The object's key.
      type: str
      sample: database/20250101T000000Z/data/0001.dump
    path:
      description: The local file.
      type: str
    size:
      description: Size in bytes of the local file (after the download, for a download; none in check mode when
        the file is not there yet).
      type: int
    sha256:
      description: sha256 of the local file, read from disk (after the download, for a download; none in check
        mode when the file is not there yet).
      type: str
    changed:
      description: Whether this object (upload) or file (download) was written, or would be in check mode.
      type: bool
sha256:
  description: The sha256 of every local file by name (the RV(files) values, for comparison with a manifest).
  returned: always
  type: dict
  sample: {"data/0001.dump": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
transferred:
  description: Names written (or that would be, in check mode), in order.
  returned: always
  type: list
  elements: str
unchanged:
  description: Names left as they were (the object or file already had the content).
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible_collections.agbotkit.dr.plugins.module_utils._aws import (
    AWS_ERRORS,
    aws_client,
    aws_module,
    is_boto3_error_code,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import TransferError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.agbotkit.dr.plugins.module_utils._transfer import (
    SHA256_META,
    file_digests,
    local_path,
    object_key,
    safe_name,
    same_content,
    upload_order,
)

try:
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig
except ImportError:  # pragma: no cover - AnsibleAWSModule reports the missing library
    TransferConfig = None
    S3UploadFailedError = None

TRANSFER_ERRORS = AWS_ERRORS + ((S3UploadFailedError,) if S3UploadFailedError is not None else ())

MIB = 1024 * 1024


class Transfer:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.bucket = self.p["bucket"]
        self.s3 = aws_client(module, "s3", retries=4, delay=1, max_delay=8)
        threshold = max(5, self.p["multipart_threshold_mb"]) * MIB
        self.config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold)

    def url(self, key):
        return f"s3://{self.bucket}/{key}"

    def head(self, key):
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key, aws_retry=True)
        except is_boto3_error_code(["404", "NoSuchKey", "NotFound"]):
            return None
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            raise TransferError(f"Failed to read the metadata of {self.url(key)}: {e}. Check the bucket, the "
                                "credentials (s3:GetObject) and the endpoint, then run again",
                                key=key) from e

    def plan(self, names):
        """(name, key, path) of every name, all checked before anything is transferred."""
        out = []
        root = self.p["src"] if self.p["mode"] == "upload" else self.p["dest"]
        for name in names:
            clean = safe_name(name)
            out.append((name, object_key(self.p["prefix"], clean), local_path(root, clean)))
        return out

    def upload(self, result):
        names = upload_order(self.p["files"], self.p["last"])
        items = self.plan(names)
        digests = {}
        for name, key, path in items:  # every file read before the first write: a missing one writes nothing
            try:
                digests[name] = file_digests(path)
            except OSError as e:
                raise TransferError(f"Cannot read {path} (for {self.url(key)}): {e.strerror}. Nothing was uploaded; "
                                    "make the file readable or remove it from files", key=key) from e
        extra = {"ServerSideEncryption": self.p["encryption"]}
        if self.p["encryption"] == "aws:kms" and self.p["kms_key_id"]:
            extra["SSEKMSKeyId"] = self.p["kms_key_id"]
        for name, key, path in items:
            local = digests[name]
            write = not same_content(local, self.head(key), self.p["encryption"])
            if write and not self.module.check_mode:
                args = dict(extra, Metadata={SHA256_META: local["sha256"]})
                try:
                    self.s3.upload_file(path, self.bucket, key, ExtraArgs=args, Config=self.config)
                except TRANSFER_ERRORS as e:
                    raise TransferError(f"Failed to upload {path} to {self.url(key)}: {e}. Objects written before it "
                                        f"stay ({', '.join(result['transferred']) or 'none'}); what is listed in "
                                        "last was not written. Fix the cause and run again: unchanged objects are "
                                        "skipped", key=key) from e
            self.record(result, name, key, path, local, write)

    def download(self, result):
        items = self.plan(self.p["files"])
        dest = self.p["dest"]
        for name, key, path in items:
            remote = self.head(key)
            if remote is None:
                raise TransferError(f"{self.url(key)} does not exist: the backup is incomplete. Choose another "
                                    "backup", key=key)
            local = file_digests(path) if os.path.isfile(path) else None
            write = local is None or not same_content(local, remote, trust_metadata=False)
            if write and not self.module.check_mode:
                folder = os.path.dirname(path)
                os.makedirs(folder, mode=0o700, exist_ok=True)
                local_path(dest, name)  # again, now that the folders exist
                fd, tmp = tempfile.mkstemp(prefix=".s3_transfer.", dir=folder)
                os.close(fd)
                try:
                    self.s3.download_file(self.bucket, key, tmp, Config=self.config)
                    os.chmod(tmp, 0o600)
                    os.replace(tmp, path)
                except TRANSFER_ERRORS as e:
                    raise TransferError(f"Failed to download {self.url(key)} to {path}: {e}. Check the "
                                        "credentials (s3:GetObject, kms:Decrypt) and run again", key=key) from e
                except OSError as e:
                    raise TransferError(f"Cannot write {path} (from {self.url(key)}): {e.strerror}. Free space or "
                                        "fix the folder's permissions, then run again", key=key) from e
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                local = file_digests(path)  # what is on disk now, for the caller's comparison with its manifest
            self.record(result, name, key, path, local, write)

    @staticmethod
    def record(result, name, key, path, local, write):
        entry = {"name": name, "key": key, "path": path, "size": local and local["size"],
                 "sha256": local and local["sha256"], "changed": write}
        result["files"].append(entry)
        result["sha256"][name] = entry["sha256"]
        (result["transferred"] if write else result["unchanged"]).append(name)
        if write:
            result["changed"] = True

    def run(self, result):
        if self.p["mode"] == "upload":
            self.upload(result)
        else:
            self.download(result)


def main():
    argument_spec = dict(
        mode=dict(type="str", required=True, choices=["upload", "download"]),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        files=dict(type="list", elements="str", required=True),
        last=dict(type="list", elements="str", default=[]),
        src=dict(type="path"),
        dest=dict(type="path"),
        encryption=dict(type="str", default="aws:kms", choices=["aws:kms", "AES256"]),
        kms_key_id=dict(type="str"),
        multipart_threshold_mb=dict(type="int", default=8),
    )
    module = aws_module(argument_spec, required_if=[("mode", "upload", ["src"]), ("mode", "download", ["dest"])])
    run_module(module, lambda m, result: Transfer(m).run(result),
               result=dict(changed=False, files=[], sha256={}, transferred=[], unchanged=[]))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_manifest
short_description: Sign a backup's manifest with KMS, verify and validate one before a restore, or probe the key
version_added: 0.2.0
description:
  - "O(state=signed) (backup time): signs the SHA-256 digest of C(manifest.json) in O(path) with the asymmetric KMS
    key O(key_id) (C(ECC_NIST_P256), C(ECDSA_SHA_256)) and writes C(manifest.sig) beside it. Needs C(kms:Sign). A
    C(manifest.sig) that already verifies is kept (idempotent)."
  - "O(state=verified) (restore time, before anything else of the backup is downloaded): checks O(signature_text)
    against O(manifest_text) with the public key of O(key_id) (C(kms:GetPublicKey), or O(public_key) given, so the
    restorer needs no C(kms:Sign) or C(kms:Verify)), then validates the manifest strictly: its shape and sizes,
    artifact keys from an allow-list (C(dump/toc.dat), C(dump/<n>.dat[.gz])), every path inside O(dest),
    C(backup.id) equal to O(backup_id) and of the form C(YYYYMMDDTHHMMSSZ[-label]). An unsigned, badly signed or
    malformed backup fails with a message that names the key and what to check. Returns the manifest; writes the
    verified bytes to O(dest)/manifest.json unless in check mode."
  - "O(state=probed) (playbooks/readiness.yml): signs a random 32-byte probe with O(key_id) in KMS and verifies the
    signature with the key's public key from KMS, so a disabled, deleted, wrong-usage or unreachable key, or a
    role without C(kms:Sign) or C(kms:GetPublicKey), is found before a backup needs it. Writes nothing; never
    changed."
  - O(dest) is created with mode 0700; a folder there that belongs to another user, or is a symbolic link, is
    refused.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  state:
    description: Sign (backup), verify (restore) or probe the key (readiness).
    type: str
    choices: [signed, verified, probed]
    required: true
  key_id:
    description: The KMS key (id, ARN or C(alias/...)), asymmetric C(ECC_NIST_P256) with usage C(SIGN_VERIFY).
    type: str
    required: true
  path:
    description: With O(state=signed), the backup folder holding C(manifest.json).
    type: path
  manifest_text:
    description: With O(state=verified), the content of C(manifest.json) as read from the bucket.
    type: str
  signature_text:
    description: With O(state=verified), the content of C(manifest.sig); empty when the bucket has none.
    type: str
    default: ""
  backup_id:
    description: With O(state=verified), the backup's folder name in the bucket.
    type: str
  dest:
    description: With O(state=verified), the local folder of this backup (the artifacts go below it).
    type: path
  public_key:
    description: PEM public key to verify with instead of asking KMS (pin it to verify without AWS access).
    type: str
  region:
    description: AWS region of the key.
    type: str
  endpoint_url:
    description: KMS endpoint (the lab's moto server).
    type: str
  access_key:
    description: AWS access key id; default the usual boto3 chain (environment, profile, instance role).
    type: str
  secret_key:
    description: AWS secret access key.
    type: str
  session_token:
    description: AWS session token.
    type: str
attributes:
  check_mode:
    support: full
    description: Verifies and probes in check mode (they only read) but writes nothing; signing reports the change it
      would make.
  diff_mode:
    support: none
    description: The module returns no diff.
requirements:
  - boto3
  - cryptography
seealso:
  - module: agbotkit.dr.db_dump
  - name: KMS asymmetric keys
    description: Signing and verifying with KMS.
    link: https://docs.aws.amazon.com/kms/latest/developerguide/symmetric-asymmetric.html
"""

EXAMPLES = r"""
- name: Sign the manifest of a fresh backup
  agbotkit.dr.backup_manifest:
    state: signed
    path: /var/tmp/backups/20261125T120000Z
    key_id: alias/ag-botkit-backup-signing
    region: us-east-1

- name: Verify and validate a manifest read from the bucket
  agbotkit.dr.backup_manifest:
    state: verified
    manifest_text: "{{ manifest_object.contents }}"
    signature_text: "{{ signature_object.contents | default('') }}"
    backup_id: 20261125T120000Z
    dest: ~/.cache/agbotkit-dr/restore/20261125T120000Z
    key_id: alias/ag-botkit-backup-signing
    region: us-east-1
  register: verified

- name: The signing key signs, and its signature verifies
  agbotkit.dr.backup_manifest:
    state: probed
    key_id: alias/ag-botkit-backup-signing
    region: us-east-1
"""

RETURN = r"""
manifest:
  description: The verified manifest (O(state=verified)).
  returned: state is verified and success
  type: dict
digest:
  description: C(sha256:<hex>) of C(manifest.json).
  returned: success
  type: str
key_arn:
  description: The key that signed or verified (from KMS; the O(key_id) given when O(public_key) was used).
  returned: success
  type: str
probe_verified:
  description: The probe was signed by KMS and its signature verified (O(state=probed)); absent on any failure.
  returned: state is probed and success
  type: bool
key_spec:
  description: The key's spec and usage as KMS reports them (O(state=probed)).
  returned: state is probed and success
  type: str
  sample: ECC_NIST_P256 SIGN_VERIFY
signature_path:
  description: Where C(manifest.sig) was written (O(state=signed)).
  returned: state is signed
  type: str
"""

import base64
import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.agbotkit.dr.plugins.module_utils._backup import (
    MAX_MANIFEST_BYTES,
    SIGNATURE_FORMAT,
    SIGNING_ALGORITHM,
    backup_manifest_problems,
    parse_signature,
    private_folder,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AgbotDrError, MissingLibraryError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
except ImportError:  # pragma: no cover
    HAS_BOTO3 = False
try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover
    HAS_CRYPTOGRAPHY = False


class Signer:
    def __init__(self, p):
        self.p = p
        self._client = None

    @property
    def client(self):
        if self._client is None:
            names = (("region", "region_name"), ("endpoint_url", "endpoint_url"), ("access_key", "aws_access_key_id"),
                     ("secret_key", "aws_secret_access_key"), ("session_token", "aws_session_token"))
            kwargs = {k: self.p[o] for o, k in names if self.p[o]}
            self._client = boto3.client("kms", **kwargs)
        return self._client

    def public_key(self):
        """(key object, key ARN)."""
        if self.p["public_key"]:
            return load_pem_public_key(self.p["public_key"].encode()), self.p["key_id"]
        try:
            resp = self.client.get_public_key(KeyId=self.p["key_id"])
        except (BotoCoreError, ClientError) as exc:
            raise AgbotDrError("Failed to get the public key of KMS key %s: %s. Check the key id "
                               "(db_restore_signing_key_id / dr_backup_signing_key_id), its region, and that this "
                               "role may call kms:GetPublicKey on it" % (self.p["key_id"], exc)) from exc
        spec = resp.get("KeySpec") or resp.get("CustomerMasterKeySpec")
        if spec != "ECC_NIST_P256" or resp.get("KeyUsage") != "SIGN_VERIFY":
            raise AgbotDrError("KMS key %s is %s for %s, not an ECC_NIST_P256 SIGN_VERIFY key: point "
                               "dr_backup_signing_key_id at the backup signing key" % (
                                   self.p["key_id"], spec, resp.get("KeyUsage")))
        return load_der_public_key(resp["PublicKey"]), resp.get("KeyId", self.p["key_id"])

    @staticmethod
    def verifies(key, digest: bytes, signature_b64: str) -> bool:
        try:
            key.verify(base64.b64decode(signature_b64, validate=True), digest, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False

    def sign(self, digest: bytes) -> tuple[str, str]:
        try:
            # RAW: KMS hashes the 32 digest bytes with SHA-256 and signs that (see module_utils/_backup.py)
            resp = self.client.sign(KeyId=self.p["key_id"], Message=digest, MessageType="RAW",
                                    SigningAlgorithm=SIGNING_ALGORITHM)
        except (BotoCoreError, ClientError) as exc:
            raise AgbotDrError("Failed to sign the manifest with KMS key %s: %s. Check db_backup_signing_key_id "
                               "and that the backup role may call kms:Sign on it" % (self.p["key_id"], exc)) from exc
        return base64.b64encode(resp["Signature"]).decode(), resp.get("KeyId", self.p["key_id"])


def run(module: AnsibleModule, out: dict) -> None:
    if not HAS_CRYPTOGRAPHY:
        raise MissingLibraryError(missing_required_lib("cryptography"))
    if not HAS_BOTO3 and not module.params["public_key"]:
        raise MissingLibraryError(missing_required_lib("boto3"))
    p = module.params
    signer = Signer(p)
    if p["state"] == "probed":
        if p["public_key"]:
            raise AgbotDrError("state=probed asks KMS for the public key: do not give public_key")
        digest = hashlib.sha256(os.urandom(32)).digest()
        out["digest"] = "sha256:" + digest.hex()
        key, arn = signer.public_key()
        out["key_arn"] = arn
        out["key_spec"] = "ECC_NIST_P256 SIGN_VERIFY"
        signature, _arn = signer.sign(digest)
        if not signer.verifies(key, digest, signature):
            raise AgbotDrError("KMS key %s signed the probe but its signature does not verify with the key's "
                               "public key: backups signed now could not be restored. Check the key in KMS (and "
                               "that dr_backup_signing_key_id names the key whose public key restores use)"
                               % p["key_id"])
        out["probe_verified"] = True
        return
    if p["state"] == "signed":
        mpath = os.path.join(p["path"], "manifest.json")
        spath = os.path.join(p["path"], "manifest.sig")
        out["signature_path"] = spath
        if not os.path.isfile(mpath):
            if module.check_mode:
                out["changed"] = True
                return
            raise AgbotDrError("Failed to sign: %s does not exist" % mpath)
        with open(mpath, "rb") as fh:
            raw = fh.read()
        digest = hashlib.sha256(raw).digest()
        out["digest"] = "sha256:" + digest.hex()
        if os.path.isfile(spath):
            try:
                with open(spath) as fh:
                    existing = parse_signature(fh.read())
                key, arn = signer.public_key()
                if existing["digest"] == out["digest"] and signer.verifies(key, digest, existing["signature"]):
                    out["key_arn"] = arn
                    return
            except ValueError:
                pass
        out["changed"] = True
        if module.check_mode:
            return
        signature, arn = signer.sign(digest)
        out["key_arn"] = arn
        tmp = spath + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"format": SIGNATURE_FORMAT, "key_id": arn, "algorithm": SIGNING_ALGORITHM,
                       "digest": out["digest"], "signature": signature}, fh, indent=2, sort_keys=True)
        os.replace(tmp, spath)
        return

    # verified
    bid = p["backup_id"]
    raw = p["manifest_text"].encode("utf-8")
    what = "Backup %s is refused" % bid
    todo = ("Nothing was downloaded besides its manifest and nothing was changed. Check that the backup was "
            "taken by playbooks/backup.yml with signing key %s (dr_backup_signing_key_id), that the restore "
            "uses the same key (db_restore_signing_key_id), and who last wrote s3 objects of this backup (object "
            "versions, CloudTrail); or choose another backup with -e db_restore_backup_id=ID" % p["key_id"])
    if len(raw) > MAX_MANIFEST_BYTES:
        raise AgbotDrError("%s: its manifest.json is %d bytes, more than %d. %s" % (
            what, len(raw), MAX_MANIFEST_BYTES, todo))
    digest = hashlib.sha256(raw).digest()
    out["digest"] = "sha256:" + digest.hex()
    try:
        sig = parse_signature(p["signature_text"])
    except ValueError as exc:
        raise AgbotDrError("%s: %s, so it cannot be shown to come from our backup job (unsigned backups are not "
                           "restored). %s" % (what, exc, todo)) from exc
    if sig["digest"] != out["digest"]:
        raise AgbotDrError("%s: its manifest.json (%s) is not the one that was signed (%s): it was changed after "
                           "the backup. %s" % (what, out["digest"], sig["digest"], todo))
    key, arn = signer.public_key()
    out["key_arn"] = arn
    if not signer.verifies(key, digest, sig["signature"]):
        raise AgbotDrError("%s: the signature of its manifest does not verify with KMS key %s (signed with "
                           "another key, or altered). %s" % (what, p["key_id"], todo))
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise AgbotDrError("%s: its manifest.json is not JSON (%s). %s" % (what, exc, todo)) from exc
    problems = backup_manifest_problems(manifest, bid)
    root = os.path.abspath(p["dest"])
    for key_name in (manifest.get("artifacts") or {}) if isinstance(manifest, dict) and not problems else ():
        target = os.path.normpath(os.path.join(root, key_name))
        if os.path.commonpath([root, target]) != root:
            problems.append("artifact %s resolves outside %s" % (key_name, root))
    if problems:
        raise AgbotDrError("%s: its manifest is malformed: %s. %s" % (what, "; ".join(problems), todo))
    private_folder(root, module.check_mode)
    out["manifest"] = manifest
    if not module.check_mode:
        mpath = os.path.join(root, "manifest.json")
        current = None
        if os.path.isfile(mpath) and not os.path.islink(mpath):
            with open(mpath, "rb") as fh:
                current = fh.read()
        if current != raw:
            tmp = mpath + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            os.replace(tmp, mpath)
            out["changed"] = True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["signed", "verified", "probed"], required=True),
            key_id=dict(type="str", required=True),
            path=dict(type="path"),
            manifest_text=dict(type="str"),
            signature_text=dict(type="str", default=""),
            backup_id=dict(type="str"),
            dest=dict(type="path"),
            public_key=dict(type="str"),
            region=dict(type="str"),
            endpoint_url=dict(type="str"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
            session_token=dict(type="str", no_log=True),
        ),
        required_if=[["state", "signed", ["path"]], ["state", "verified", ["manifest_text", "backup_id", "dest"]]],
        supports_check_mode=True,
    )
    run_module(module, run, result={"changed": False})


if __name__ == "__main__":
    main()

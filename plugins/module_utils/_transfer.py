# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the s3_transfer module (no AWS, no Ansible): names, ordering, whether to write.

- ``safe_name(name)``: a relative, normalised, forward-slash name, or ``UnsafeNameError`` (absolute, ``..``,
  empty, backslash, NUL): a backup's key list is untrusted input, so a name never leaves its folder;
- ``local_path(root, name)``: root/name, checked again after symlinks are resolved;
- ``object_key(prefix, name)``: prefix/name;
- ``upload_order(names, last)``: the names in the order given, with each name of ``last`` (in that order) moved to
  the end, so a manifest is written only after every artifact it lists;
- ``same_content(local, remote)``: whether an object already holds a file's content (the sha256 this module stores
  in the object's metadata, when trusted, else the size and the MD5 ETag of a single-part upload), and is encrypted
  as wanted.
"""

from __future__ import annotations

import hashlib
import os
import posixpath

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import UnsafeNameError

SHA256_META = "sha256"
CHUNK = 1024 * 1024


def safe_name(name) -> str:
    """name as a clean relative path ("a/b.dump"), or UnsafeNameError."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafeNameError(f"Refusing the empty name {name!r}: every file or key must be a relative path")
    if "\\" in name or "\x00" in name:
        raise UnsafeNameError(f"Refusing {name!r}: backslashes and NUL are not allowed in a file or key name")
    if name.startswith("/"):
        raise UnsafeNameError(f"Refusing {name!r}: an absolute path would leave the folder; names are relative")
    parts = name.split("/")
    if any(p == ".." for p in parts):
        raise UnsafeNameError(f"Refusing {name!r}: '..' would leave the folder or prefix")
    clean = posixpath.normpath(name)
    if clean in (".", "") or clean.startswith("../"):
        raise UnsafeNameError(f"Refusing {name!r}: it names no file inside the folder")
    return clean


def local_path(root: str, name: str) -> str:
    """root/name for a safe name, refused when a symlink on the way resolves outside root."""
    clean = safe_name(name)
    path = os.path.join(root, *clean.split("/"))
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafeNameError(f"Refusing {name!r}: {path} resolves to {real}, outside {root} (a symlink)")
    return path


def object_key(prefix: str, name: str) -> str:
    prefix = (prefix or "").strip("/")
    clean = safe_name(name)
    return f"{prefix}/{clean}" if prefix else clean


def upload_order(names, last=()) -> list:
    """names in the order given (duplicates dropped), then each of last that is among them, in last's order."""
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    tail = [n for n in last if n in seen]
    return [n for n in seen if n not in tail] + tail


def file_digests(path: str) -> dict:
    """sha256, md5 and size of a local file, read once."""
    sha, size = hashlib.sha256(), 0
    md5 = hashlib.md5(usedforsecurity=False)  # only to compare with S3 ETags of objects written by other tools
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "size": size}


def same_content(local: dict, remote: dict | None, encryption: str | None = None, trust_metadata: bool = True) -> bool:
    """Whether the object described by remote (a HeadObject answer, or None when absent) holds local's content.

    local: file_digests(); encryption: the ServerSideEncryption wanted (an object stored otherwise is written
    again), or None not to compare it (downloads).
    trust_metadata: compare the sha256 this module stored in the object's metadata (uploads: it is what we wrote).
    Downloads pass False: metadata is whatever the last writer said, and an object altered in storage may keep it, so
    a local file is kept only when S3's own single-part ETag (the MD5 S3 computed) matches; otherwise it is
    downloaded again (under SSE-KMS, AWS's ETag is not an MD5: always downloaded, as amazon.aws.s3_object does).
    """
    if remote is None:
        return False
    if int(remote.get("ContentLength", -1)) != local["size"]:
        return False
    if encryption and remote.get("ServerSideEncryption") != encryption:
        return False
    stored = (remote.get("Metadata") or {}).get(SHA256_META)
    if stored and trust_metadata:
        return stored == local["sha256"]
    etag = (remote.get("ETag") or "").strip('"')
    # a multipart ETag (md5-of-md5s "-N") says nothing without the part size: write again
    return bool(etag) and "-" not in etag and etag == local["md5"]

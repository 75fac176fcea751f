"""Pure decisions of agbotkit.dr.s3_transfer (plugins/module_utils/_transfer.py) and the restore's sha256 comparison
(filter checksum_mismatches on the module's sha256 return). The transfers themselves run against the lab's moto
server in tests/integration/test_s3_transfer.py."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import UnsafeNameError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._transfer import (  # noqa: E402
    file_digests,
    local_path,
    object_key,
    safe_name,
    same_content,
    upload_order,
)

spec = importlib.util.spec_from_file_location("backups", ROOT / "plugins/filter/backups.py")
backups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(backups)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/..", "..", "/etc/passwd", "//x", "", "  ", "a\\..\\x",
                                  "a\x00b", ".", "./", None, 3])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UnsafeNameError):
        safe_name(name)


@pytest.mark.parametrize(("name", "clean"), [("a", "a"), ("dump/toc.dat", "dump/toc.dat"), ("./a//b", "a/b"),
                                             ("manifest.json", "manifest.json")])
def test_safe_names_are_normalised(name, clean):
    assert safe_name(name) == clean


def test_local_path_refuses_a_symlink_out_of_the_folder(tmp_path):
    root, outside = tmp_path / "dest", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafeNameError, match="outside"):
        local_path(str(root), "link/x.dump")
    (root / "inner").mkdir()
    (root / "ok").symlink_to(root / "inner")
    assert local_path(str(root), "ok/x") == os.path.join(str(root), "ok", "x")
    with pytest.raises(UnsafeNameError):
        local_path(str(root), "../outside/x")


def test_object_key_joins_prefix_and_name():
    assert object_key("database/ID/", "dump/toc.dat") == "database/ID/dump/toc.dat"
    assert object_key("", "a") == "a"
    with pytest.raises(UnsafeNameError):
        object_key("database/ID", "../OTHER/manifest.json")


def test_upload_order_puts_last_at_the_end_in_its_own_order():
    names = ["manifest.json", "b", "manifest.sig", "a", "b"]
    assert upload_order(names, ["manifest.sig", "manifest.json"]) == ["b", "a", "manifest.sig", "manifest.json"]
    assert upload_order(["a", "b"], ["manifest.json"]) == ["a", "b"]
    assert upload_order(["b", "a"]) == ["b", "a"]


def _local(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(), "size": len(data)}


def test_file_digests(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 3000000)
    assert file_digests(str(p)) == _local(b"x" * 3000000)


def test_same_content_decision():
    data = _local(b"hello")
    stored = {"ContentLength": 5, "ServerSideEncryption": "aws:kms", "Metadata": {"sha256": data["sha256"]},
              "ETag": '"whatever-2"'}
    assert same_content(data, stored, "aws:kms")
    assert not same_content(data, None, "aws:kms")                                       # absent
    assert not same_content(_local(b"hellO"), stored, "aws:kms")                         # same size, other content
    assert not same_content(_local(b"hello!"), stored, "aws:kms")                        # other size
    assert not same_content(data, dict(stored, ServerSideEncryption="AES256"), "aws:kms")  # not encrypted as asked
    assert not same_content(data, {k: v for k, v in stored.items() if k != "ServerSideEncryption"}, "aws:kms")
    assert same_content(data, dict(stored, ServerSideEncryption=None), None)             # downloads do not compare it
    # downloads never trust the metadata: an object altered in storage may keep it
    altered = dict(stored, ETag='"' + hashlib.md5(b"hellO").hexdigest() + '"')
    assert same_content(data, altered, None, trust_metadata=True)
    assert not same_content(data, altered, None, trust_metadata=False)
    assert same_content(data, dict(stored, ETag='"' + data["md5"] + '"'), None, trust_metadata=False)
    # written by another tool: the single-part ETag is the MD5; a multipart ETag proves nothing
    other = {"ContentLength": 5, "ServerSideEncryption": "aws:kms", "ETag": '"' + data["md5"] + '"'}
    assert same_content(data, other, "aws:kms")
    assert not same_content(data, dict(other, ETag='"' + data["md5"] + '-1"'), "aws:kms")
    assert not same_content(_local(b"hellO"), other, "aws:kms")


def test_checksum_mismatches_on_the_modules_sha256_return():
    artifacts = {"a": {"sha256": "1"}, "b": {"sha256": "2"}, "c": {"sha256": "3"}, "d": {}}
    assert backups.checksum_mismatches({"a": "1", "b": "x", "d": None}, artifacts) == ["b", "c", "d"]
    assert backups.checksum_mismatches({"a": "1"}, {"a": {"sha256": "1"}}) == []
    # the stat-loop form still works
    assert backups.checksum_mismatches([{"__db_restore_item": "a", "stat": {"checksum": "2"}}], artifacts) == ["a"]

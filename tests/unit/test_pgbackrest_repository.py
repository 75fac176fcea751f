"""The pgBackRest repository's TLS stays verified in production and DR, and its errors say what to do.

Lint: a `verify-tls=n` (or `pgbackrest_repo_s3_verify_tls: false`, or a lab CA) in the production or DR inventory fails
here. The lab's S3 repository runs with verification on too (tests/integration/test_pgbackrest_s3.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils import _pgbackrest as b  # noqa: E402

PRODUCTION_INVENTORIES = ("production", "dr")
INSECURE = re.compile(r"verify[-_]tls\s*[=:]\s*[\"']?(n|no|false|off|0)\b", re.I)


def insecure_tls_findings(folder: Path) -> list[str]:
    """Every place in an inventory folder that turns TLS verification of the repository off or trusts a lab CA."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml", ".ini", ".conf", ".j2")):
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if INSECURE.search(line):
                found.append(f"{path.relative_to(folder)}:{n}: {line.strip()}")
        doc = yaml.safe_load(text) if path.suffix in (".yml", ".yaml") else None
        for key, value in _walk(doc):
            k = str(key).lower()
            if "verify_tls" in k and value in (False, "n", "no", "false", "False"):
                found.append(f"{path.relative_to(folder)}: {key}: {value!r}")
            if k.endswith("ca_file") and isinstance(value, str) and ("agbotkit_lab" in value or ".lab/" in value):
                found.append(f"{path.relative_to(folder)}: {key}: {value!r} (the lab's CA)")
    return found


def _walk(doc, key=None):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _walk(v, k)
    elif isinstance(doc, list):
        for v in doc:
            yield from _walk(v, key)
    elif key is not None:
        yield key, doc


@pytest.mark.parametrize("name", PRODUCTION_INVENTORIES)
def test_production_and_dr_inventories_never_turn_repository_tls_verification_off(name):
    folder = ROOT / "inventories" / name
    assert folder.is_dir()
    assert insecure_tls_findings(folder) == []


@pytest.mark.parametrize("name", PRODUCTION_INVENTORIES)
def test_production_and_dr_use_an_s3_repository_with_sse_kms(name):
    doc = yaml.safe_load((ROOT / "inventories" / name / "group_vars" / "all" / "main.yml").read_text())
    assert doc["dr_pgbackrest_repo_type"] == "s3"
    assert doc["dr_pgbackrest_kms_key_id"].startswith(("alias/", "arn:aws:kms:"))
    assert doc["dr_pgbackrest_s3_endpoint"].endswith(".amazonaws.com")
    assert doc.get("dr_pgbackrest_s3_key_type", "auto") == "auto"   # no keys in an inventory: the instance role


@pytest.mark.parametrize("line", [
    "pgbackrest_repo_s3_verify_tls: false",
    "dr_pgbackrest_s3_verify_tls: no",
    "pgbackrest_repo_s3_verify_tls: 'false'",
    "#   repo1-storage-verify-tls=n",
    "extra: 'repo1-s3-verify-tls=n'",
    "dr_pgbackrest_s3_ca_file: \"{{ agbotkit_lab.env.LAB_CA_FILE }}\"",
])
def test_the_lint_finds_each_way_of_turning_verification_off(tmp_path, line):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "main.yml").write_text("---\ndr_environment: production\n" + line + "\n")
    assert insecure_tls_findings(tmp_path), line


def test_the_role_verifies_tls_by_default():
    doc = yaml.safe_load((ROOT / "roles" / "pgbackrest" / "defaults" / "main.yml").read_text())
    assert doc["pgbackrest_repo_s3_verify_tls"] is True
    spec = yaml.safe_load((ROOT / "roles" / "pgbackrest" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["pgbackrest_repo_s3_verify_tls"]["default"] is True


# pgBackRest 2.45's own words, as seen against the lab's TLS front (tests/integration/test_pgbackrest_s3.py)
WRONG_CA = ("[CryptoError] unable to verify certificate presented by '127.0.0.1:62699': [19] self-signed certificate "
            "in certificate chain")
NO_BUCKET = ("[ProtocolError] HTTP request failed with 404 (NOT FOUND): *** Response Content ***: "
             "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>"
             "<Message>The specified bucket does not exist</Message></Error>")


def test_explain_a_certificate_not_trusted():
    advice = b.explain(WRONG_CA)
    assert advice.startswith("the repository endpoint's TLS certificate is not trusted: set pgbackrest_repo_s3_ca_file")
    assert "LAB_CA_FILE" in advice and "Do not turn verification off" in advice


def test_explain_a_missing_bucket_and_other_known_errors():
    assert b.explain(NO_BUCKET).startswith("the S3 bucket does not exist")
    assert "credentials" in b.explain("<Code>InvalidAccessKeyId</Code>")
    assert "KMS key" in b.explain("<Code>KMS.NotFoundException</Code>")
    assert "denied" in b.explain("<Code>AccessDenied</Code>")
    assert "did not answer" in b.explain("[HostConnectError] unable to connect to 'x:443': [111] Connection refused")
    assert b.explain("ERROR: [055]: unable to load info file") == ""


def test_explain_a_wal_archive_timeout_blames_archive_command_not_the_endpoint():
    # seen in a CI rehearsal: a posix repository, archive_command failing; the old advice named the S3 endpoint
    text = ("ERROR: [082]: WAL segment 00000002000000030000007A was not archived before the 60000ms timeout\n"
            "HINT: check the archive_command to ensure that all options are correct (especially --stanza).")
    advice = b.explain(text)
    assert advice.startswith("WAL does not reach the repository: the database's archive_command fails")
    assert "pg_stat_archiver" in advice and "s3_endpoint" not in advice
    assert "did not answer" in b.explain("HostConnectError: timeout after 5000ms waiting for read/write ready")


def test_with_advice_appends_what_to_do_only_when_known():
    msg = b.with_advice("Failed to run pgbackrest stanza-create (exit 95): " + WRONG_CA, WRONG_CA)
    assert msg.endswith("Do not turn verification off (pgbackrest_repo_s3_verify_tls): the repository holds the whole "
                        "database")
    assert ". What to do: the repository endpoint's TLS certificate is not trusted" in msg
    assert b.with_advice("Failed: odd", "odd") == "Failed: odd"


def test_parse_info_keeps_the_repository_error_of_status_other():
    doc = [{"name": "ag_botkit", "status": {"code": 99, "message": "other"}, "backup": [], "archive": [], "db": [],
            "repo": [{"key": 1, "status": {"code": 99, "message": WRONG_CA}}]}]
    info = b.parse_info(doc, "ag_botkit")
    assert info["status_code"] == 99 and info["repo_errors"] == [WRONG_CA]

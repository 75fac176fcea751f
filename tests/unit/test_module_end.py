"""How a module ends: plugins/module_utils/_module.py (run_module), driven through a real AnsibleModule and a real
AnsibleAWSModule, and an AST scan that every module under plugins/modules ends in one place."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._approval import ApprovalError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import (  # noqa: E402
    AgbotDrError,
    AwsApiError,
    DatabaseQueryError,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module  # noqa: E402

# --------------------------------------------------------------------------------------------- run_module


def end(run, capsys, result=None, cleanup=None, args=None, module_class=AnsibleModule):
    """Run run_module in a real module; return (exit code, the JSON the module printed)."""
    with patch_module_args(args or {}), pytest.raises(SystemExit) as exited:
        module = module_class(argument_spec={}, supports_check_mode=True)
        run_module(module, run, result=result, cleanup=cleanup)
    return exited.value.code, json.loads(capsys.readouterr().out)


def test_success_reports_result_merged_with_what_run_returns(capsys):
    def run(module, result):
        result["step"] = "one"
        return {"changed": True, "extra": 2}

    code, out = end(run, capsys, result={"changed": False, "kept": 1})
    assert code == 0
    assert out["changed"] is True and out["kept"] == 1 and out["step"] == "one" and out["extra"] == 2
    assert "failed" not in out


def test_early_return_exits_with_the_result_so_far(capsys):
    def run(module, result):
        result["found"] = True
        return None

    code, out = end(run, capsys, result={"changed": False})
    assert code == 0 and out["changed"] is False and out["found"] is True


def test_error_fails_once_with_partial_result_and_details(capsys):
    def run(module, result):
        result.update(changed=True, queries=["SELECT 1"], sqlstate="ours")
        err = DatabaseQueryError("Failed to run query on x: boom", query="SELECT 2", sqlstate="55P03")
        err.details["msg"] = "a message in the details never replaces the error's"
        raise err

    code, out = end(run, capsys, result={"changed": False})
    assert code == 1 and out["failed"] is True
    assert out["msg"] == "Failed to run query on x: boom"
    assert out["changed"] is True and out["queries"] == ["SELECT 1"]
    assert out["query"] == "SELECT 2" and out["sqlstate"] == "55P03"  # the error's details win


def test_cleanup_runs_before_the_module_reports_on_both_paths(capsys):
    closed = []

    def cleanup(result):
        closed.append(True)
        result["queries"] = ["recorded"]

    _code, out = end(lambda m, r: None, capsys, result={}, cleanup=cleanup)
    assert closed == [True] and out["queries"] == ["recorded"]

    def failing(module, result):
        raise AgbotDrError("nope")

    _code, out = end(failing, capsys, result={}, cleanup=cleanup)
    assert closed == [True, True] and out["failed"] is True and out["queries"] == ["recorded"]


def test_an_error_that_is_not_ours_is_not_swallowed_and_cleanup_still_runs():
    closed = []

    def run(module, result):
        raise KeyError("a bug")

    with patch_module_args({}), pytest.raises(KeyError):
        run_module(AnsibleModule(argument_spec={}), run, cleanup=lambda r: closed.append(True))
    assert closed == [True]


def test_approval_errors_report_approved_false(capsys):
    def run(module, result):
        raise ApprovalError("needs an approval by a second person")

    _code, out = end(run, capsys)
    assert out["failed"] is True and out["approved"] is False and "second person" in out["msg"]


def client_error():
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"},
                        "ResponseMetadata": {"HTTPStatusCode": 404, "RequestId": "req-1"}}, "GetBucketVersioning")


def test_aws_error_keeps_amazon_aws_failure_shape(capsys):
    pytest.importorskip("botocore")
    from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

    def run(module, result):
        try:
            raise client_error()
        except Exception as e:
            raise AwsApiError("Failed to read versioning of evidence bucket b1; nothing was changed", e) from e

    code, out = end(run, capsys, result={"changed": False}, module_class=AnsibleAWSModule,
                    args={"region": "us-east-1"})
    assert code == 1 and out["failed"] is True
    assert out["msg"] == ("Failed to read versioning of evidence bucket b1; nothing was changed: An error occurred "
                          "(NoSuchBucket) when calling the GetBucketVersioning operation: The specified bucket does "
                          "not exist")
    assert out["error"] == {"code": "NoSuchBucket", "message": "The specified bucket does not exist"}
    assert out["response_metadata"]["http_status_code"] == 404
    assert "boto3_version" in out and "botocore_version" in out
    assert out["changed"] is False


def test_aws_error_in_a_plain_module_still_names_the_aws_error(capsys):
    pytest.importorskip("botocore")

    def run(module, result):
        raise AwsApiError("Failed to read the approval records", client_error())

    _code, out = end(run, capsys)
    assert out["msg"].startswith("Failed to read the approval records: An error occurred (NoSuchBucket)")


# --------------------------------------------------------------------------------------------- one end per module

MODULES = ROOT / "plugins" / "modules"
# Action-only plugins: plugins/modules/NAME.py is their documentation stub, without main().
ACTION_ONLY = {p.stem for p in (ROOT / "plugins" / "action").glob("*.py")}
MODULE_UTILS = ROOT / "plugins" / "module_utils"
ENDINGS = ("exit_json", "fail_json", "fail_json_aws")
# Modules allowed to end another way while they are being reworked (none now: pgbackrest and pgbackrest_restore were
# the last). Remove a name here once its module ends through run_module (the test below fails to remind you).
KNOWN_EXCEPTIONS: set[str] = set()


def calls(source: str) -> list[tuple[str, str, int]]:
    """(enclosing top-level function or class, called name, line) of every call of an ending or run_module."""
    found = []
    for top in ast.parse(source).body:
        where = getattr(top, "name", "<module>")
        for node in ast.walk(top):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in ENDINGS or name == "run_module":
                    found.append((where, name, node.lineno))
    return found


def violations(source: str) -> list[str]:
    """Why a module does not end in one place: exit_json/fail_json/fail_json_aws called outside main() or more
    than once each in main(), or a main() that neither ends through run_module nor calls exit_json itself."""
    found = calls(source)
    out = [f"line {line}: {name}() called in {where}, not in main()"
           for where, name, line in found if where != "main" and name in ENDINGS]
    in_main = [name for where, name, _line in found if where == "main"]
    for name in (*ENDINGS, "run_module"):
        if in_main.count(name) > 1:
            out.append(f"main() calls {name}() {in_main.count(name)} times")
    if "run_module" not in in_main and "exit_json" not in in_main:
        out.append("main() neither calls run_module() nor exit_json()")
    if "run_module" in in_main and any(name in ENDINGS for name in in_main):
        out.append("main() calls run_module() and also ends the module itself")
    return out


@pytest.mark.parametrize("path", sorted(p for p in MODULES.glob("*.py") if p.stem not in ACTION_ONLY),
                         ids=lambda p: p.stem)
def test_module_ends_in_one_place(path):
    problems = violations(path.read_text())
    if path.stem in KNOWN_EXCEPTIONS:
        assert problems, f"{path.name} now ends in one place: remove it from KNOWN_EXCEPTIONS"
        pytest.skip("known exception (reworked elsewhere): " + "; ".join(problems))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_only_run_module_ends_a_module_from_module_utils():
    """A helper in module_utils that calls exit_json/fail_json (the old _pg.finish) would hide a second ending
    from the scan above."""
    offenders = [f"{path.name}:{line} {name}() in {where}"
                 for path in sorted(MODULE_UTILS.glob("*.py")) if path.name != "_module.py"
                 for where, name, line in calls(path.read_text()) if name in ENDINGS]
    assert offenders == []


def test_the_scan_finds_each_way_a_module_used_to_end():
    """The shapes this collection had before run_module, each caught."""
    five_exits = (
        "def main():\n    module = M()\n    if a:\n        module.exit_json(**out)\n    try:\n        x()\n"
        "    except E as err:\n        module.fail_json(msg=str(err))\n    module.exit_json(**out)\n")
    assert violations(five_exits) == ["main() calls exit_json() 2 times"]
    deep = (
        "class Store:\n    def fail(self, e):\n        self.module.fail_json_aws(e, msg='x')\n"
        "def main():\n    module = M()\n    module.exit_json(**Store(module).run())\n")
    assert violations(deep) == ["line 3: fail_json_aws() called in Store, not in main()"]
    helper = "def main():\n    module = M()\n    finish(module, out)\n"
    assert violations(helper) == ["main() neither calls run_module() nor exit_json()"]
    mixed = ("def main():\n    module = M()\n    if bad:\n        module.fail_json(msg='x')\n"
             "    run_module(module, run)\n")
    assert violations(mixed) == ["main() calls run_module() and also ends the module itself"]
    good = "def run(module, result):\n    return {}\ndef main():\n    module = M()\n    run_module(module, run)\n"
    assert violations(good) == []

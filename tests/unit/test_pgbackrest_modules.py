"""The two pgBackRest modules end through run_module (module_utils/_module.py): their refusals and early ends, run
in-process through a real AnsibleModule (and the real pgbackrest binary where a command runs). What the result and
the message hold must not change with how the module ends; the scan in test_module_end.py checks the shape."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.modules import pgbackrest, pgbackrest_restore  # noqa: E402

needs_pgbackrest = pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest is not installed")


def run_main(module, args, capsys):
    """(exit code, the JSON the module printed)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def me():
    """Run pgbackrest as ourselves (no runuser/sudo)."""
    import os
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


@needs_pgbackrest
def test_pgbackrest_failure_reports_the_command_error_and_nothing_changed(tmp_path, me, capsys):
    code, out = run_main(pgbackrest, {"command": "info", "stanza": "x", "os_user": me,
                                      "config": str(tmp_path / "missing.conf")}, capsys)
    assert code == 1 and out["failed"] is True and out["changed"] is False
    assert out["msg"].startswith("Failed to run pgbackrest info for stanza x (exit 55): ERROR: [055]: unable to open "
                                 "missing file")
    assert out["cmd"][-1] == "info" and out["seconds"] >= 0  # what ran is reported with the failure


@needs_pgbackrest
def test_pgbackrest_stanza_create_in_check_mode_reports_the_change_and_ends_early(tmp_path, me, capsys):
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text("[global]\nrepo1-path=%s\n" % (tmp_path / "repo"))
    code, out = run_main(pgbackrest, {"command": "stanza-create", "stanza": "x", "os_user": me, "config": str(conf),
                                      "_ansible_check_mode": True}, capsys)
    assert code == 0 and "failed" not in out
    assert out["changed"] is True and "cmd" not in out and "info" not in out  # nothing ran after the info read
    assert not (tmp_path / "repo").exists()


def restore_args(tmp_path, **extra):
    return dict({"stanza": "x", "data_dir": str(tmp_path / "main"), "restore_dir": str(tmp_path / "main.pitr"),
                 "state_file": str(tmp_path / "state.json"), "port": 5499}, **extra)


def test_restore_refuses_the_live_data_directory_and_reports_port_and_seconds(tmp_path, capsys):
    code, out = run_main(pgbackrest_restore, restore_args(tmp_path, restore_dir=str(tmp_path / "main" / "x")), capsys)
    assert code == 1 and out["failed"] is True
    assert "is the live data directory" in out["msg"] and "choose a sibling folder" in out["msg"]
    assert out["changed"] is False and out["port"] == 5499 and out["seconds"] == {}


def test_restore_reports_a_target_time_that_does_not_parse_as_a_failure_not_a_traceback(tmp_path, capsys):
    code, out = run_main(pgbackrest_restore, restore_args(tmp_path, target_time="yesterday noon"), capsys)
    assert code == 1 and out["failed"] is True
    assert out["msg"] == "Invalid isoformat string: 'yesterday noon'"
    assert out["port"] == 5499 and out["changed"] is False


def test_restore_refuses_to_record_a_verification_without_a_ready_cluster(tmp_path, capsys):
    code, out = run_main(pgbackrest_restore, restore_args(tmp_path, state="verified"), capsys)
    assert code == 1
    assert out["msg"] == "there is no restored cluster ready to record as verified (state missing)"


def test_restore_absent_with_nothing_there_ends_early_unchanged(tmp_path, capsys):
    code, out = run_main(pgbackrest_restore, restore_args(tmp_path, state="absent"), capsys)
    assert code == 0 and "failed" not in out
    assert out == {"changed": False, "port": 5499, "seconds": {}, "status": "absent", "target_time": "",
                   "invocation": out["invocation"]}

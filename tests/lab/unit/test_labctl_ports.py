"""labctl reads each service's port from LAB_*_PORT and refuses a value that is not a usable port, naming the
variable (a lane offset added to an already moved port once gave only `OverflowError: connect_ex()`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dev" / "lab"))
import labctl  # noqa: E402


def test_default_and_moved_ports(monkeypatch):
    monkeypatch.delenv("LAB_PG_PORT", raising=False)
    assert labctl.port("pg") == 55432
    monkeypatch.setenv("LAB_PG_PORT", "61632")
    assert labctl.port("pg") == 61632


@pytest.mark.parametrize("value", ["67832", "0", "80", "-1"])
def test_a_port_out_of_range_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("LAB_K8S_PORT", value)
    with pytest.raises(labctl.LabError, match=r"LAB_K8S_PORT=-?\d+ is not a port from 1024 to 65535.*env \| grep"):
        labctl.port("k8s")


def test_a_port_that_is_not_a_number_names_the_variable(monkeypatch):
    monkeypatch.setenv("LAB_SINK_PORT", "http")
    with pytest.raises(labctl.LabError, match="LAB_SINK_PORT='http' is not a port number"):
        labctl.port("sink")

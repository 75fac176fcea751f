"""Time parsing, RTO/RPO and the restore-point choice: plugins/plugin_utils/timing.py and the filters over it
(plugins/filter/timing.py). The one place the collection parses times and computes recovery figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[2] / ".collections"
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.filter import timing as flt  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.plugin_utils import timing  # noqa: E402

T0 = 1735725600.0  # 2025-01-01T10:00:00Z


@pytest.mark.parametrize("text", [
    "2025-01-01T10:00:00Z", "2025-01-01T10:00:00z", "2025-01-01 10:00:00", "2025-01-01T10:00:00",
    "2025-01-01T10:00:00+00:00", "2025-01-01T12:00:00+02:00", "2025-01-01T12:00:00+0200",
    "2025-01-01 10:00:00+00", "2025-01-01T10:00:00UTC", "2025-01-01T10:00", " 2025-01-01T10:00:00Z ",
    "1735725600", "1735725600.0", T0, int(T0),
    "20250101T100000Z", "20250101T120000+02:00", "20250101T100000"])   # basic format: backup ids
def test_parse_time_reads_every_form_the_collection_meets(text):
    assert timing.parse_time(text) == T0


def test_parse_time_keeps_fractions_and_reads_a_date_alone_as_midnight_utc():
    assert timing.parse_time("2025-01-01T10:00:00.250Z") == T0 + 0.25
    assert timing.parse_time("2025-01-01 10:00:00,5+00") == T0 + 0.5
    assert timing.parse_time("2025-01-01") == T0 - 36000


@pytest.mark.parametrize("bad", [None, "", "None", "yesterday", "2025-13-01T00:00:00Z", "2025-01-01T10:00:00+25:00",
                                 True, "2025-01-01T10:00:00 Europe/Paris"])
def test_parse_time_refuses_what_is_not_a_time(bad):
    assert timing.parse_time(bad) is None


def test_require_time_says_what_is_accepted():
    with pytest.raises(ValueError, match="ISO 8601"):
        timing.require_time("soon", "declared")


def test_seconds_between_and_age():
    assert timing.seconds_between("2025-01-01T10:01:30Z", T0) == 90.0
    assert timing.seconds_between(T0, "2025-01-01T10:01:30Z") == -90.0
    assert timing.age_seconds("2025-01-01T09:59:00Z", now=T0) == 60.0
    assert timing.age_seconds("", now=T0) is None


def test_step_durations_each_step_lasts_until_the_next_starts():
    assert timing.step_durations({"load": T0 + 10, "dump": T0, "verify": "2025-01-01T10:00:25Z"}, T0 + 40) == {
        "dump": 10.0, "load": 15.0, "verify": 15.0}


def test_rto_declared_to_resolved_never_negative():
    assert timing.rto_seconds(T0, T0 + 82.7) == 82.7
    assert timing.rto_seconds("2025-01-01T10:00:00Z", "2025-01-01T11:00:00+01:00") == 0.0
    assert 0 <= timing.rto_seconds(T0) - (timing.rto_seconds(T0 + 10)) <= 10.5   # open: measured to now


def test_rpo_is_data_lost_never_negative_and_none_without_a_restored_point():
    assert timing.rpo_seconds("2025-01-01T10:00:00Z", "2025-01-01T09:59:58") == 2.0
    assert timing.rpo_seconds(T0, T0 + 5) == 0.0            # restored a point after the incident: nothing lost
    assert timing.rpo_seconds(T0, "") is None
    with pytest.raises(ValueError):
        timing.rpo_seconds("not a time", T0)


def test_compute_rto_judges_against_the_objective():
    inc = {"declared_at": "2025-01-01T10:00:00Z", "rto_objective": 60}
    assert timing.compute_rto(dict(inc, resolved_epoch=T0 + 59), None)["status"] == "met"
    missed = timing.compute_rto(dict(inc, resolved_epoch=T0 + 61), None)
    assert missed["status"] == "missed" and missed["met"] is False and missed["seconds"] == 61.0
    assert timing.compute_rto(inc, T0 + 10)["status"] == "open"
    assert timing.compute_rto({}, T0)["status"] == "unknown"


def test_compute_rpo_judges_against_the_objective():
    inc = {"incident_time": "2025-01-01T10:00:00Z", "rpo_objective": 3600}
    assert timing.compute_rpo(inc, T0 - 3599)["status"] == "met"
    missed = timing.compute_rpo(inc, T0 - 3601)
    assert missed["status"] == "missed" and missed["seconds"] == 3601.0
    assert timing.compute_rpo(inc, None)["status"] == "not reported"


@pytest.mark.parametrize("snap, pitr, method, point, age", [
    ("2025-01-01T09:00:00", "2025-01-01T09:59:50", "pitr", "2025-01-01T09:59:50", 10),
    ("2025-01-01T09:59:50", "2025-01-01T09:00:00", "snapshot", "2025-01-01T09:59:50", 10),
    ("2025-01-01T09:59:50", "2025-01-01T09:59:50", "snapshot", "2025-01-01T09:59:50", 10),   # a tie keeps the snapshot
    ("2025-01-01T09:00:00", "", "snapshot", "2025-01-01T09:00:00", 3600),
    ("", "2025-01-01T09:30:00", "pitr", "2025-01-01T09:30:00", 1800),
    ("", "", "none", "", None),
    (None, None, "none", "", None),
])
def test_restore_point_takes_whichever_loses_less_data(snap, pitr, method, point, age):
    choice = timing.choose_restore_point(snap, pitr, now=T0)
    assert (choice["method"], choice["restore_point"], choice["expected_rpo_seconds"]) == (method, point, age)
    assert choice["snapshot_age_seconds"] == (None if not snap else int(T0 - timing.parse_time(snap)))
    assert choice["pitr_age_seconds"] == (None if not pitr else int(T0 - timing.parse_time(pitr)))


def test_restore_point_refuses_an_unreadable_time_instead_of_guessing():
    with pytest.raises(ValueError, match="snapshot time"):
        timing.choose_restore_point("last tuesday", "", now=T0)
    with pytest.raises(AnsibleFilterError, match="agbotkit.dr.choose_restore_point"):
        flt.restore_point("", "garbage", T0)


def test_filters_share_the_one_implementation():
    filters = flt.FilterModule().filters()
    assert filters["to_epoch"]("2025-01-01T10:00:00Z") == T0
    assert filters["to_epoch"]("nope", None) is None
    with pytest.raises(AnsibleFilterError, match="not a time"):
        filters["to_epoch"]("nope")
    assert filters["rpo_seconds"]("2025-01-01T10:00:00Z", "2025-01-01T09:59:58Z") == 2.0
    assert filters["rto_seconds"](T0, T0 + 1.5) == 1.5
    with pytest.raises(AnsibleFilterError):
        filters["seconds_between"]("x", T0)
    figs = filters["recovery_figures"]({"declared_epoch": T0, "incident_epoch": T0 - 30, "rto_objective": 100,
                                        "rpo_objective": 10}, T0 + 50, T0 - 40)
    assert (figs["rto"]["seconds"], figs["rto"]["status"]) == (50.0, "met")
    assert (figs["rpo"]["seconds"], figs["rpo"]["status"]) == (10.0, "met")
    open_figs = filters["recovery_figures"]({"declared_epoch": T0})
    assert open_figs["rto"]["status"] == "open" and open_figs["rpo"]["status"] == "not reported"

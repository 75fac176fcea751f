# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The collection's time filters (documented one by one in the sidecar files beside this one:
seconds_between, to_epoch, step_durations, rto_seconds, rpo_seconds, recovery_figures, restore_point).

They are thin wrappers over plugins/plugin_utils/timing.py, the one place the collection parses times and
computes RTO and RPO; the incident_timeline callback uses the same code.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleFilterError

from ansible_collections.agbotkit.dr.plugins.plugin_utils import timing

_UNSET = object()


def _call(func, *args):
    try:
        return func(*args)
    except ValueError as exc:
        raise AnsibleFilterError("agbotkit.dr.%s: %s" % (func.__name__, exc)) from exc


def to_epoch(value, default=_UNSET):
    """Epoch seconds of a time; ``default`` when unreadable (an error when no default is given)."""
    epoch = timing.parse_time(value)
    if epoch is None:
        if default is not _UNSET:
            return default
        raise AnsibleFilterError("agbotkit.dr.to_epoch: %r is not a time: use ISO 8601 (e.g. 2025-06-01T09:30:00Z)"
                                 " or epoch seconds" % (value,))
    return epoch


def seconds_between(later, earlier):
    return _call(timing.seconds_between, later, earlier)


def step_durations(starts, end):
    return _call(timing.step_durations, starts, end)


def rto_seconds(declared, resolved=None):
    return _call(timing.rto_seconds, declared, resolved)


def rpo_seconds(incident_time, recovered):
    return _call(timing.rpo_seconds, incident_time, recovered)


def recovery_figures(incident, resolved=None, recovered=None):
    """RTO and RPO of an incident (the incident role's fact) against its objectives."""
    incident = dict(incident or {})
    if resolved not in (None, ""):
        incident["resolved_epoch"] = _call(timing.require_time, resolved, "resolved")
    end = incident.get("resolved_epoch", time.time())
    return {"rto": timing.compute_rto(incident, end), "rpo": timing.compute_rpo(incident, recovered)}


def restore_point(snapshot_time, pitr_time=None, now=None):
    return _call(timing.choose_restore_point, snapshot_time, pitr_time, now)


class FilterModule:
    def filters(self):
        return {"seconds_between": seconds_between, "step_durations": step_durations, "to_epoch": to_epoch,
                "rto_seconds": rto_seconds, "rpo_seconds": rpo_seconds, "recovery_figures": recovery_figures,
                "restore_point": restore_point}

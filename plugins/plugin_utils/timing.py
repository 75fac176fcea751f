# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Time parsing and the recovery figures (RTO, RPO, restore-point choice), once, for the whole collection.

Controller side only (filters, the incident_timeline callback); no Ansible imports, so it is unit tested
as plain Python. Every task file, filter and report that needs a time or an RTO/RPO figure goes through here:

* ``parse_time``: epoch seconds from an epoch number, an ISO 8601 text (``Z``, ``UTC``, ``+HH``, ``+HH:MM``;
  a time without a zone is UTC) or a datetime; ``None`` when unreadable.
* ``rto_seconds``: declared -> resolved (or -> now while the incident is open).
* ``rpo_seconds``: incident time - newest data point restored (data lost, never negative).
* ``compute_rto`` / ``compute_rpo``: the same figures judged against their objectives.
* ``choose_restore_point``: point-in-time restore or snapshot, whichever loses less data.
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time

DEFAULT_RTO_OBJECTIVE = 14400
DEFAULT_RPO_OBJECTIVE = 3600

_ISO_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
# ISO 8601 basic format, as backup ids are written (20250101T100000Z)
_ISO_BASIC_RE = re.compile(
    r"^\s*(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(?:(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_NUMBER_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")


def parse_time(value):
    """Return epoch seconds (float) for an epoch number or an ISO 8601 string; None if unusable.

    Accepts ``2025-01-01T10:00:00Z``, ``2025-01-01 10:00:00.123+00``, ``...+02:00``, ``2025-01-01`` (midnight
    UTC), the basic format ``20250101T100000Z`` (backup ids), epoch ints/floats and numeric strings. A time without
    a zone is taken as UTC.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    text = str(value).strip()
    if not text or text.lower() in ("none", "null"):
        return None
    if _NUMBER_RE.match(text):
        return float(text)
    match = _ISO_RE.match(text) or _ISO_BASIC_RE.match(text)
    if not match:
        if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
            text += "T00:00:00"
            match = _ISO_RE.match(text)
        if not match:
            return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = _dt.timezone.utc
    if zone and zone not in ("Z", "z", "UTC"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if offset >= _dt.timedelta(hours=24):
            return None
        tz = _dt.timezone(sign * offset)
    try:
        moment = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz)
    except ValueError:
        return None
    return moment.timestamp()


def require_time(value, what="time"):
    """parse_time, or ValueError saying what was wrong (for filters that must not guess)."""
    epoch = parse_time(value)
    if epoch is None:
        raise ValueError("%s %r is not a time: use ISO 8601 (e.g. 2025-06-01T09:30:00Z) or epoch seconds"
                         % (what, value))
    return epoch


def iso(epoch, precise=False):
    """ISO 8601 UTC text for epoch seconds (None stays None)."""
    if epoch is None:
        return None
    moment = _dt.datetime.fromtimestamp(float(epoch), _dt.timezone.utc)
    if precise:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_duration(seconds):
    """``H:MM:SS`` (negative values get a leading minus; None gives 'n/a')."""
    if seconds is None:
        return "n/a"
    sign = "-" if seconds < 0 else ""
    total = int(round(abs(seconds)))
    return "%s%d:%02d:%02d" % (sign, total // 3600, (total % 3600) // 60, total % 60)


def seconds_between(later, earlier):
    """later - earlier in seconds (may be negative), rounded to the millisecond."""
    return round(require_time(later, "later") - require_time(earlier, "earlier"), 3)


def age_seconds(value, now=None):
    """Seconds from value to now (default: the current time); None when value is empty or unreadable."""
    then = parse_time(value)
    if then is None:
        return None
    current = _time.time() if now is None else require_time(now, "now")
    return round(current - then, 3)


def step_durations(starts, end):
    """Dict of step -> seconds, from the steps' start times (any order) and the end of the last step."""
    items = sorted(((k, require_time(v, k)) for k, v in (starts or {}).items()), key=lambda kv: kv[1])
    stop_all = require_time(end, "end")
    out = {}
    for i, (name, start) in enumerate(items):
        stop = items[i + 1][1] if i + 1 < len(items) else stop_all
        out[name] = round(stop - start, 3)
    return out


def rto_seconds(declared, resolved=None):
    """RTO: declared -> resolved (default: now), never negative. ValueError if declared is not a time."""
    start = require_time(declared, "declared")
    end = _time.time() if resolved in (None, "") else require_time(resolved, "resolved")
    return round(max(0.0, end - start), 3)


def rpo_seconds(incident_time, recovered):
    """RPO: incident time - newest data point restored, never negative; None when nothing restored is known."""
    started = require_time(incident_time, "incident time")
    point = parse_time(recovered)
    if point is None:
        return None
    return round(max(0.0, started - point), 3)


def _objective(value, default):
    try:
        value = int(value)
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def compute_rto(incident, run_end, objective=DEFAULT_RTO_OBJECTIVE):
    """RTO of an incident dict against its objective. Open incidents report the time so far (status 'open')."""
    incident = incident or {}
    objective = _objective(incident.get("rto_objective"), objective)
    declared = parse_time(incident.get("declared_epoch", incident.get("declared_at")))
    resolved = parse_time(incident.get("resolved_epoch", incident.get("resolved_at")))
    out = {"objective": objective, "declared_at": iso(declared), "resolved_at": iso(resolved),
           "seconds": None, "status": "unknown", "met": None}
    if declared is None:
        return out
    end = resolved if resolved is not None else parse_time(run_end)
    if end is None:
        return out
    out["seconds"] = rto_seconds(declared, end)
    out["met"] = out["seconds"] <= objective
    if resolved is None:
        out["status"] = "open"
    else:
        out["status"] = "met" if out["met"] else "missed"
    return out


def compute_rpo(incident, recovered_data_time, objective=DEFAULT_RPO_OBJECTIVE):
    """RPO of an incident dict against its objective (status 'not reported' when no restored point is known)."""
    incident = incident or {}
    objective = _objective(incident.get("rpo_objective"), objective)
    started = parse_time(incident.get("incident_epoch", incident.get("incident_time")))
    recovered = parse_time(recovered_data_time)
    out = {"objective": objective, "incident_time": iso(started), "recovered_data_time": iso(recovered),
           "seconds": None, "raw_seconds": None, "status": "not reported", "met": None}
    if started is None or recovered is None:
        return out
    out["raw_seconds"] = round(started - recovered, 3)
    out["seconds"] = rpo_seconds(started, recovered)
    out["met"] = out["seconds"] <= objective
    out["status"] = "met" if out["met"] else "missed"
    return out


def choose_restore_point(snapshot_time=None, pitr_time=None, now=None):
    """Which restore point loses less data: the newest snapshot or the latest restorable time (PITR).

    Returns ``method`` (``pitr``, ``snapshot`` or ``none``), ``restore_point`` (the chosen time as given, or ''),
    ``snapshot_age_seconds`` and ``pitr_age_seconds`` (int seconds before now, None when that candidate is
    missing) and ``expected_rpo_seconds`` (the chosen age; None when there is nothing to restore from).
    PITR wins only when strictly newer than the snapshot (a snapshot is a fixed, already verified point).
    """
    current = _time.time() if now in (None, "") else require_time(now, "now")
    snap_age = None if not snapshot_time else int(current - require_time(snapshot_time, "snapshot time"))
    pitr_age = None if not pitr_time else int(current - require_time(pitr_time, "latest restorable time"))
    if snap_age is None and pitr_age is None:
        method, point, age = "none", "", None
    elif snap_age is None or (pitr_age is not None and pitr_age < snap_age):
        method, point, age = "pitr", pitr_time, pitr_age
    else:
        method, point, age = "snapshot", snapshot_time, snap_age
    return {"method": method, "restore_point": point or "", "snapshot_age_seconds": snap_age,
            "pitr_age_seconds": pitr_age, "expected_rpo_seconds": age}

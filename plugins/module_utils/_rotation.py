# Copyright: agbotkit.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resumable two-phase rotation of one secret (pure decisions, unit-tested in tests/unit/test_rotation.py).

The order that never leaves a client with neither password:

1. ``pending``: the new value is stored in Secrets Manager as a new version labelled AWSPENDING
   (AWSCURRENT still holds the old value, which still logs in);
2. ``alter``: the source is changed (``ALTER ROLE ... PASSWORD``); from here the pending value logs in;
3. ``promote``: AWSCURRENT moves to the pending version (Secrets Manager moves AWSPREVIOUS to the old one);
4. the caller then updates the Kubernetes Secret and restarts the workloads that read it.

A run that died anywhere in between is resumed by looking at the state, never at a marker: which versions
exist and which value logs in decide the next phase (``decide``).
"""

from __future__ import annotations

import uuid

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import RotationError

PHASES = ("start", "alter", "promote", "done")

# A fixed namespace: the version id of the rotation of secret S in incident I is uuid5(NS, "I/S"),
# so a re-run of the same incident recognises its own version and does not rotate twice.
_TOKEN_NS = uuid.UUID("6f1c3c1e-6a43-4d55-9a5e-2c1f0e0b7a11")


def version_token(incident_id: str, secret_id: str) -> str:
    """The ClientRequestToken (version id) of this incident's new version of secret_id."""
    return str(uuid.uuid5(_TOKEN_NS, f"{incident_id}/{secret_id}"))


def decide(*, current_is_ours: bool, current_logs_in: bool, pending_exists: bool, pending_logs_in: bool,
           has_source: bool = True) -> str:
    """Next phase of the rotation.

    current_is_ours: AWSCURRENT is this incident's version (version_token);
    current_logs_in / pending_logs_in: the AWSCURRENT / AWSPENDING value logs in at the source
    (without a source, e.g. an API token only our own clients read, pass True / False);
    pending_exists: a version labelled AWSPENDING exists (other than AWSCURRENT's).

    Returns "start" (nothing begun: make the new value), "alter" (pending stored, source not changed yet),
    "promote" (source changed, AWSCURRENT not moved yet) or "done" (this incident's value is current and
    works). Raises RotationError when no stored value logs in.
    """
    if not has_source:
        if current_is_ours:
            return "done"
        return "promote" if pending_exists else "start"
    if pending_exists and pending_logs_in:
        # ALTER ROLE happened (the pending value works): finish by promoting it, whatever current says.
        return "promote"
    if current_logs_in:
        if current_is_ours:
            return "done"
        return "alter" if pending_exists else "start"
    if current_is_ours:
        raise RotationError(
            "the rotated value is AWSCURRENT but does not log in: the password was changed outside this run. "
            "Set it again from Secrets Manager's AWSCURRENT (ALTER ROLE) or start a new incident id to rotate anew")
    raise RotationError(
        "neither AWSCURRENT nor AWSPENDING logs in: the source's password is unknown to Secrets Manager. "
        "Reset it by hand to AWSCURRENT's value (ALTER ROLE ... PASSWORD), then run again")


def steps(phase: str) -> list[str]:
    """The steps a phase still has to do, in order."""
    return {"start": ["pending", "alter", "promote"], "alter": ["alter", "promote"],
            "promote": ["promote"], "done": []}[phase]


def parse_value(secret_string: str | None, json_key: str | None) -> str | None:
    """The secret's value: the whole SecretString, or one key of it when it is a JSON object."""
    import json

    if secret_string is None:
        return None
    if not json_key:
        return secret_string
    try:
        data = json.loads(secret_string)
    except ValueError as exc:
        raise RotationError(f"the secret is not a JSON object, so it has no key {json_key!r}") from exc
    if not isinstance(data, dict) or json_key not in data:
        raise RotationError(f"the secret has no key {json_key!r}")
    return str(data[json_key])


def render_value(old_secret_string: str | None, json_key: str | None, value: str) -> str:
    """The SecretString of the new version: the old JSON with json_key replaced, or the value itself."""
    import json

    if not json_key:
        return value
    data = json.loads(old_secret_string) if old_secret_string else {}
    if not isinstance(data, dict):
        raise RotationError(f"the secret is not a JSON object, so it has no key {json_key!r}")
    data[json_key] = value
    return json.dumps(data)

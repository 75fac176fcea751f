"""CloudTrail stand-in for the lab's AWS server: records the API calls it receives, answers LookupEvents.

moto 5.2 implements trails (CreateTrail, ...) but not LookupEvents, which is what an investigation reads
(DR plan §4 "Review CloudTrail logs"). dev/lab/services/aws_server.py hands every signed request to
`Recorder.record()` and a LookupEvents request to `Recorder.lookup()`. The operation's name is the one the
server's resolver gives (it names an S3 PutObject CopyObject: both are PUT /{Bucket}/{Key+}).
What it keeps, per call: time, event name (the API operation), event source (`<signing name>.amazonaws.com`),
region, access key id, the principal
(the IAM user owning the access key in moto, else `root` as CloudTrail names the account's root identity: moto
treats any other key, e.g. the lab's default `testing`, as the account's own credentials), source IP, user
agent, the HTTP status answered and an error code for 4xx/5xx.
Kept in memory (the newest MAX_EVENTS, as moto keeps its state in memory) and appended to
`<lab-dir>/cloudtrail.jsonl` for people to read. Not kept: request parameters and resources (real CloudTrail
has them), data events are recorded like management events (real CloudTrail records S3 object calls only in
a trail with data events on), and a restarted server starts empty.

LookupEvents answers like CloudTrail: `LookupAttributes` (one of EventName, Username, EventSource,
AccessKeyId, ReadOnly, EventId), `StartTime`, `EndTime`, `MaxResults` (1-50, default 50), `NextToken`;
newest first; each event with `CloudTrailEvent` as a JSON string (`userIdentity`, `eventTime`, `eventSource`,
`eventName`, `awsRegion`, `sourceIPAddress`, `userAgent`, `errorCode`, `readOnly`, `eventID`).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG = logging.getLogger("lab.aws.cloudtrail")

MAX_EVENTS = 100_000
READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head", "Search", "BatchGet", "Check", "Select")
LOOKUP_KEYS = {"EventName": "event_name", "Username": "username", "EventSource": "event_source",
               "AccessKeyId": "access_key", "ReadOnly": "read_only", "EventId": "event_id"}
DEFAULT_ACCOUNT = "123456789012"


def is_read_only(action: str) -> bool:
    return action.startswith(READ_PREFIXES)


def principal_of(access_key: str | None) -> tuple[str, str, str]:
    """(username, identity type, account) of an access key as moto knows it."""
    if not access_key:
        return "anonymous", "AWSAccount", DEFAULT_ACCOUNT
    try:
        from moto.iam.models import get_account_id_from, iam_backends

        account = get_account_id_from(access_key)
        backend = iam_backends[account]["global"]
        for user in backend.users.values():
            for key in getattr(user, "access_keys", []):
                if key.access_key_id == access_key:
                    return user.name, "IAMUser", account
        return "root", "Root", account
    except Exception:  # noqa: BLE001 - moto internals: fall back to the account's root
        return "root", "Root", DEFAULT_ACCOUNT


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Recorder:
    def __init__(self, lab_dir: Path | None = None) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_EVENTS)
        self._lock = threading.Lock()
        self._path = (lab_dir / "cloudtrail.jsonl") if lab_dir else None

    @staticmethod
    def is_lookup(info: dict[str, Any]) -> bool:
        return info.get("service") == "cloudtrail" and info.get("action") == "LookupEvents"

    def record(self, info: dict[str, Any], environ: dict[str, Any], start_response: Callable) -> Callable:
        """Wrap start_response so that the call is recorded with the status it was answered."""
        if not info.get("service") or not info.get("action"):
            return start_response

        def _wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            try:
                self.add(info, environ, int(status.split(maxsplit=1)[0]))
            except Exception:  # noqa: BLE001 - recording must never break a request
                LOG.exception("could not record %s", info)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return _wrapped

    def add(self, info: dict[str, Any], environ: dict[str, Any], status: int, when: float | None = None) -> dict:
        username, kind, account = principal_of(info.get("access_key"))
        action = info["action"]
        event = {
            "event_id": str(uuid.uuid4()),
            "time": when if when is not None else time.time(),
            "event_name": action,
            "event_source": f"{info['service']}.amazonaws.com",
            "region": info.get("region") or "us-east-1",
            "access_key": info.get("access_key") or "",
            "username": username,
            "identity_type": kind,
            "account": account,
            "read_only": "true" if is_read_only(action) else "false",
            "source_ip": environ.get("REMOTE_ADDR", ""),
            "user_agent": environ.get("HTTP_USER_AGENT", "")[:200],
            "status": status,
            "error_code": None if status < 400 else ("ThrottlingException" if status == 429 else f"HTTP{status}"),
        }
        with self._lock:
            self._events.append(event)
            if self._path is not None:
                with self._path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(event) + "\n")
        return event

    # ------------------------------------------------------------------------------------------ LookupEvents
    @staticmethod
    def _cloudtrail_event(e: dict[str, Any]) -> dict[str, Any]:
        iso = datetime.fromtimestamp(e["time"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        identity: dict[str, Any] = {"type": e["identity_type"], "accountId": e["account"],
                                    "accessKeyId": e["access_key"]}
        if e["identity_type"] == "IAMUser":
            identity.update(userName=e["username"], arn=f"arn:aws:iam::{e['account']}:user/{e['username']}")
        else:
            identity["arn"] = f"arn:aws:iam::{e['account']}:root"
        detail = {"eventVersion": "1.08", "userIdentity": identity, "eventTime": iso,
                  "eventSource": e["event_source"], "eventName": e["event_name"], "awsRegion": e["region"],
                  "sourceIPAddress": e["source_ip"], "userAgent": e["user_agent"],
                  "readOnly": e["read_only"] == "true", "eventID": e["event_id"], "eventType": "AwsApiCall",
                  "managementEvent": True, "recipientAccountId": e["account"],
                  "lab": "recorded by the lab's AWS server (dev/lab/services/cloudtrail.py), not by CloudTrail"}
        if e["error_code"]:
            detail["errorCode"] = e["error_code"]
        return {"EventId": e["event_id"], "EventName": e["event_name"], "ReadOnly": e["read_only"],
                "AccessKeyId": e["access_key"], "EventTime": e["time"], "EventSource": e["event_source"],
                "Username": e["username"], "Resources": [], "CloudTrailEvent": json.dumps(detail)}

    def query(self, request: dict[str, Any], region: str | None = None) -> dict[str, Any]:
        """LookupEvents on the record (raises ValueError for an invalid request)."""
        attrs = request.get("LookupAttributes") or []
        if len(attrs) > 1:
            raise ValueError("You can only specify one lookup attribute")
        flt: tuple[str, str] | None = None
        if attrs:
            key = attrs[0].get("AttributeKey")
            if key not in LOOKUP_KEYS:
                raise ValueError(f"Unsupported lookup attribute key {key!r} in the lab stand-in")
            flt = (LOOKUP_KEYS[key], str(attrs[0].get("AttributeValue", "")))
        start, end = _epoch(request.get("StartTime")), _epoch(request.get("EndTime"))
        limit = int(request.get("MaxResults") or 50)
        if not 1 <= limit <= 50:
            raise ValueError("MaxResults must be between 1 and 50")
        offset = int(request.get("NextToken") or 0)
        with self._lock:
            events = list(self._events)
        chosen = [e for e in reversed(events)
                  if (region is None or e["region"] == region)
                  and (start is None or e["time"] >= start) and (end is None or e["time"] <= end)
                  and (flt is None or str(e[flt[0]]) == flt[1])]
        page = chosen[offset:offset + limit]
        answer: dict[str, Any] = {"Events": [self._cloudtrail_event(e) for e in page]}
        if offset + limit < len(chosen):
            answer["NextToken"] = str(offset + limit)
        return answer

    def lookup(self, body: bytes, info: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            request = json.loads(body or b"{}")
            status, payload = 200, self.query(request, info.get("region"))
        except (ValueError, TypeError) as exc:
            status, payload = 400, {"__type": "InvalidLookupAttributesException", "message": str(exc)}
        data = json.dumps(payload).encode()
        return status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))], data

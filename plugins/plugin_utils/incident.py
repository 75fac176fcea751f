# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the incident role's notifications and communication log, used by the action plugins
agbotkit.dr.incident_notify and agbotkit.dr.incident_log (controller side, no module process).

What each function builds is what the role's task files built before (issue #14): the same request bodies,
message texts, log entries and failure details, so the lab's sinks, the communication log and the
incident_timeline callback see no difference.
"""

from __future__ import annotations

import datetime
import json
import os

CHANNELS = ("slack", "pagerduty", "email", "statuspage")
MASK = "********"
FAILURE_LIMIT = 300
SLACK_COLORS = {"P0": "danger", "P1": "warning"}
SLACK_DEFAULT_COLOR = "#439FE0"
ACCEPTED = {"slack": [200], "pagerduty": [200, 201, 202], "statuspage": [200, 201]}
NOT_DECLARED = "No incident declared in this run: run the agbotkit.dr.incident role's declare entry point first"
NO_DETAIL = "failed (details hidden by no_log)"


def check_incident(incident, keys):
    """An error message when the incident lacks one of keys (no incident declared), else None."""
    if not isinstance(incident, dict) or not incident.get("incident_id"):
        return NOT_DECLARED
    missing = [k for k in keys if not incident.get(k)]
    return "the incident has no %s: declare it with the incident role" % ", ".join(missing) if missing else None


def truncate(text, length=255, end="...", leeway=5):
    """Jinja's truncate filter (killwords=False, the default leeway of 5)."""
    text = str(text)
    if len(text) <= length + leeway:
        return text
    return text[: length - len(end)].rsplit(" ", 1)[0] + end


def secret_values(settings):
    """The secret settings of the channels (webhook token, routing key, SMTP password, API key), non-empty."""
    values = [settings.get("slack", {}).get("webhook_token"), settings.get("pagerduty", {}).get("routing_key"),
              settings.get("email", {}).get("password"), settings.get("statuspage", {}).get("api_key")]
    return [str(v) for v in values if v not in (None, "")]


def scrub(value, secrets):
    """Replace every secret value in a text, or in the strings of a list/dict, by asterisks."""
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def configured_channels(settings):
    """Channels whose settings are present (roles/incident/vars/main.yml __incident_configured_channels)."""
    slack, pd = settings.get("slack", {}), settings.get("pagerduty", {})
    email, sp = settings.get("email", {}), settings.get("statuspage", {})
    out = []
    if slack.get("webhook_url") and slack.get("webhook_token"):
        out.append("slack")
    if pd.get("routing_key"):
        out.append("pagerduty")
    if email.get("smtp_host") and email.get("to"):
        out.append("email")
    if sp.get("page_id") and sp.get("api_key"):
        out.append("statuspage")
    return out


def select_channels(requested, incident, settings):
    """This message's channels: the requested ones that are configured, else the incident's channels."""
    configured = configured_channels(settings)
    if requested:
        return [c for c in requested if c in configured]
    return list(incident.get("channels") or [])


def compose(incident, status, message, secrets):
    """(text, subject) of a message, as notify.yml composed them; the text scrubbed of secrets."""
    raw = "[%s] %s (%s): %s" % (incident["severity"], incident["incident_id"], status,
                                message if message else incident.get("summary", ""))
    subject = "[%s] %s %s" % (incident["severity"], incident["incident_id"], status)
    return scrub(raw, secrets), subject


def slack_request(incident, status, text, slack):
    url = str(slack["webhook_url"]).rstrip("/") + "/" + str(slack["webhook_token"])
    fields = [{"title": "Severity", "value": incident["severity"], "short": True},
              {"title": "Incident", "value": incident["incident_id"], "short": True},
              {"title": "Status", "value": status, "short": True},
              {"title": "Commander", "value": incident["commander"], "short": True}]
    body = {"text": text, "username": slack.get("username", "agbotkit-dr"),
            "attachments": [{"color": SLACK_COLORS.get(incident["severity"], SLACK_DEFAULT_COLOR), "fields": fields}]}
    if slack.get("channel"):
        body["channel"] = slack["channel"]
    return {"url": url, "method": "POST", "headers": {}, "body": body}


def pagerduty_request(incident, status, text, pagerduty, severities):
    body = {
        "routing_key": pagerduty["routing_key"],
        "event_action": "resolve" if status == "resolved" else "trigger",
        "dedup_key": incident["incident_id"],
        "payload": {
            "summary": truncate(text, 1000),
            "source": pagerduty.get("source", "agbotkit.dr"),
            "severity": severities[incident["severity"]]["pagerduty_severity"],
            "component": "ag-botkit",
            "custom_details": {"incident_id": incident["incident_id"], "severity": incident["severity"],
                               "status": status, "commander": incident["commander"], "message": text},
        },
    }
    return {"url": pagerduty["events_url"], "method": "POST", "headers": {}, "body": body}


def statuspage_request(incident, status, text, subject, statuspage, severities):
    existing = incident.get("statuspage_incident_id") or ""
    url = "%s/pages/%s/incidents%s" % (str(statuspage["api_url"]).rstrip("/"), statuspage["page_id"],
                                       ("/" + str(existing)) if existing else "")
    body = {"incident": {"name": subject, "status": status,
                         "impact_override": severities[incident["severity"]]["statuspage_impact"],
                         "body": text,
                         "metadata": {"agbotkit": {"incident_id": incident["incident_id"],
                                                   "severity": incident["severity"]}}}}
    return {"url": url, "method": "PATCH" if existing else "POST",
            "headers": {"Authorization": "OAuth %s" % statuspage["api_key"]}, "body": body}


def remembered_statuspage(incident, response_json):
    """The incident with the status page incident id a POST created, or None when there is nothing to remember."""
    new_id = response_json.get("id") if isinstance(response_json, dict) else None
    if new_id in (None, "") or str(new_id) == "" or incident.get("statuspage_incident_id"):
        return None
    return dict(incident, statuspage_incident_id=str(new_id))


def email_body(incident, status, text):
    return ("%s\n\nIncident:  %s\nSeverity:  %s\nStatus:    %s\nCommander: %s\n"
            % (text, incident["incident_id"], incident["severity"], status, incident["commander"]))


def email_detail(email):
    return "to " + ", ".join(str(t) for t in email.get("to") or [])


def failure_detail(status, msg, secrets):
    """The failed entry's detail, as _failed.yml built it: 'HTTP <status>: <msg>' (msg truncated), scrubbed, trimmed."""
    prefix = ("HTTP %s: " % status) if status is not None else ""
    text = prefix + truncate(msg if msg else NO_DETAIL, FAILURE_LIMIT)
    return scrub(text, secrets).strip()


def warning_text(channel, incident_id, failure):
    return "notification channel '%s' failed for %s (%s); the recovery goes on" % (channel, incident_id, failure)


def message_entry(channel, outcome, detail, status, incident, text):
    return {"type": "message", "channel": channel, "outcome": outcome, "detail": detail, "status": status,
            "who": incident["commander"], "message": text}


def log_line(incident, entry, now=None):
    """One JSON Lines entry: time (UTC, microseconds), incident_id, severity, user, then the entry's fields."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {"time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "incident_id": incident["incident_id"],
              "severity": incident["severity"], "user": incident["user"]}
    record.update(entry)
    return json.dumps(record)


def append_line(path, line, mode=0o640):
    """Append one line (lineinfile insertafter=EOF create=true): a missing final newline is added first,
    the file is created with its parent folder's existing permissions untouched, and its mode set."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        size = os.fstat(fd).st_size
        prefix = b""
        if size:
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    prefix = b"\n"
        os.write(fd, prefix + line.encode("utf-8") + b"\n")
    finally:
        os.close(fd)
    if (os.stat(path).st_mode & 0o7777) != mode:
        os.chmod(path, mode)

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done on the controller by the action plugin plugins/action/incident_notify.py.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: incident_notify
short_description: Send one incident message to Slack, PagerDuty, email and the status page, and log each outcome
version_added: 0.2.0
description:
  - The incident role's C(notify) entry point (and C(resolve)'s final message) in one task. An action plugin, it runs
    on the controller, without a module process per channel.
  - "The message text is V([<severity>] <incident id> (<status>\\): <message or the incident's summary>), with every
    secret value of the channels replaced by asterisks; the subject (email, status page name) is
    V([<severity>] <incident id> <status>)."
  - "Channels: Slack incoming webhook (POST, HTTP 200), PagerDuty Events v2 (POST, C(trigger), or C(resolve) when
    O(status=resolved), HTTP 200, 201 or 202), email over SMTP (as M(community.general.mail) sends it), status page
    (POST a new incident, HTTP 200 or 201, then PATCH the incident's C(statuspage_incident_id)); the created id is
    returned in RV(statuspage_incident)."
  - Each channel gets one communication-log entry (C(type=message), C(channel), C(outcome) V(sent) or V(failed),
    C(detail), C(status), C(who), C(message)) in the incident's C(log_path), as M(agbotkit.dr.incident_log) writes it.
  - "A failed channel does not fail the task: its entry says V(failed) with the detail V(HTTP <status>: <reason>)
    (reason truncated to 300 characters, secrets scrubbed), the warning V(notification channel '<channel>' failed for
    <incident id> (<detail>\\); the recovery goes on) is shown and returned in the C(incident_timeline_warning) fact
    (a list) that the P(agbotkit.dr.incident_timeline#callback) callback records as an event."
  - Secrets (webhook token, routing key, SMTP password, API key) are never returned; the result is safe to print.
  - Run it with C(delegate_to=localhost), C(delegate_facts=true) and C(run_once=true), as the role does.
extends_documentation_fragment:
  - agbotkit.dr.controller_action
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  incident:
    description: The declared incident (the C(incident_timeline) fact); needs C(incident_id), C(severity),
      C(commander), C(user), C(log_path), and C(channels) when O(channels) is empty.
    type: dict
    required: true
  status:
    description: The incident's status in this message.
    type: str
    default: investigating
  message:
    description: The message; empty sends the incident's C(summary).
    type: str
    default: ""
  channels:
    description: This message's channels (those configured among them); empty sends to the incident's C(channels).
    type: list
    elements: str
    default: []
  severities:
    description: Per severity, C(pagerduty_severity) and C(statuspage_impact) (the role's plan constants).
    type: dict
    required: true
  http_timeout:
    description: Timeout in seconds of each HTTP request and of the SMTP connection.
    type: int
    default: 10
  validate_certs:
    description: Validate the TLS certificates of the HTTP channels.
    type: bool
    default: true
  slack:
    description: Slack incoming webhook.
    type: dict
    suboptions:
      webhook_url: {description: Webhook URL without the token., type: str, default: ""}
      webhook_token: {description: Secret last part of the webhook URL., type: str, default: ""}
      channel: {description: Channel override; empty for the webhook's own., type: str, default: ""}
      username: {description: Name shown as the sender., type: str, default: agbotkit-dr}
  pagerduty:
    description: PagerDuty Events v2.
    type: dict
    suboptions:
      events_url: {description: Events API URL., type: str, default: "https://events.pagerduty.com/v2/enqueue"}
      routing_key: {description: Secret integration key., type: str, default: ""}
      source: {description: The event's source., type: str, default: agbotkit.dr}
  email:
    description: Email over SMTP.
    type: dict
    suboptions:
      smtp_host: {description: SMTP server., type: str, default: ""}
      smtp_port: {description: SMTP port., type: int, default: 25}
      secure:
        description: As M(community.general.mail) C(secure).
        type: str
        choices: [try, always, never, starttls]
        default: try
      username: {description: SMTP login (with O(email.password))., type: str, default: ""}
      password: {description: Secret SMTP password., type: str, default: ""}
      sender: {description: From address., type: str, default: agbotkit-dr@localhost}
      to: {description: Recipients., type: list, elements: str, default: []}
  statuspage:
    description: Statuspage.io API.
    type: dict
    suboptions:
      api_url: {description: API base URL., type: str, default: "https://api.statuspage.io/v1"}
      page_id: {description: The page., type: str, default: ""}
      api_key: {description: "Secret API key (sent as C(Authorization: OAuth <key>)).", type: str, default: ""}
attributes:
  check_mode:
    support: full
    description: Sends nothing and logs nothing; returns the channels it would send to.
seealso:
  - module: agbotkit.dr.incident_log
  - module: community.general.mail
"""

EXAMPLES = r"""
- name: Tell every channel of the incident that the database is restored
  agbotkit.dr.incident_notify:
    incident: "{{ hostvars['localhost']['incident_timeline'] }}"
    status: monitoring
    message: Database restored in us-west-2; checking the application.
    severities:
      P0: {pagerduty_severity: critical, statuspage_impact: critical}
      P1: {pagerduty_severity: error, statuspage_impact: major}
      P2: {pagerduty_severity: warning, statuspage_impact: minor}
    slack:
      webhook_url: https://hooks.slack.com/services/T000/B000
      webhook_token: "{{ slack_token }}"
  delegate_to: localhost
  delegate_facts: true
  run_once: true
"""

RETURN = r"""
channels:
  description: The channels this message went to (or, in check mode, would go to).
  returned: always
  type: list
  elements: str
text:
  description: The message text, secrets scrubbed.
  returned: always
  type: str
subject:
  description: The subject (email, status page name).
  returned: always
  type: str
sent:
  description: Channels sent to, each with C(channel) and C(detail) (V(HTTP 200), V(to a@example.com)).
  returned: always
  type: list
  elements: dict
not_sent:
  description: Channels that failed (the task itself does not fail), each with C(channel) and C(detail) (scrubbed).
  returned: always
  type: list
  elements: dict
would_send:
  description: In check mode, the channels it would send to.
  returned: check mode
  type: list
  elements: str
statuspage_incident:
  description: The status page incident a POST created, as C(id) and C(incident) (the C(incident_timeline) fact with
    C(statuspage_incident_id)); the role stores it with M(ansible.builtin.set_fact) (a fact an action plugin returns
    ranks below the C(incident_timeline) that C(set_fact) made at the declaration).
  returned: when a status page incident was created
  type: dict
ansible_facts:
  description: C(incident_timeline_warning), one text per failed channel (read by the
    P(agbotkit.dr.incident_timeline#callback) callback).
  returned: when a channel failed
  type: dict
"""

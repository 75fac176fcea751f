# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin agbotkit.dr.incident_notify: one message of the incident role to every selected channel
(Slack, PagerDuty Events v2, email, status page), and its communication-log entries, on the controller.
Documentation: plugins/modules/incident_notify.py."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr
from urllib.error import HTTPError, URLError

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.agbotkit.dr.plugins.plugin_utils import incident as inc

_CHANNEL_OPTIONS = {
    "slack": {"webhook_url": "", "webhook_token": "", "channel": "", "username": "agbotkit-dr"},
    "pagerduty": {"events_url": "https://events.pagerduty.com/v2/enqueue", "routing_key": "",
                  "source": "agbotkit.dr"},
    "email": {"smtp_host": "", "smtp_port": 25, "secure": "try", "username": "", "password": "",
              "sender": "agbotkit-dr@localhost", "to": []},
    "statuspage": {"api_url": "https://api.statuspage.io/v1", "page_id": "", "api_key": ""},
}


class ChannelFailed(Exception):
    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.msg, self.status = msg, status


def http_send(request, accepted, timeout, validate_certs):
    """POST/PATCH a JSON body as ansible.builtin.uri (body_format json) does; (status, parsed JSON or None)."""
    headers = {"Content-Type": "application/json"}
    headers.update(request["headers"])
    try:
        resp = open_url(request["url"], data=json.dumps(request["body"]), headers=headers, method=request["method"],
                        timeout=timeout, validate_certs=validate_certs, follow_redirects="safe")
        status, raw = resp.getcode(), resp.read()
    except HTTPError as exc:
        status, raw = exc.code, b""
        reason = "HTTP Error %s: %s" % (exc.code, exc.reason)
        if status not in accepted:
            raise ChannelFailed("Status code was %s and not %s: %s" % (status, accepted, reason), status) from None
    except (URLError, OSError, ValueError) as exc:
        raise ChannelFailed("Status code was -1 and not %s: Request failed: %s" % (accepted, exc), -1) from None
    if status not in accepted:
        raise ChannelFailed("Status code was %s and not %s: OK" % (status, accepted), status)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    return status, data


def smtp_send(email, subject, body, timeout):
    """Send one mail as community.general.mail does (secure try/always/never/starttls, optional login)."""
    host, port, secure = email["smtp_host"], int(email["smtp_port"]), email["secure"]
    username, password = email.get("username"), email.get("password")
    to = [str(t) for t in email["to"]]
    smtp, secure_state = None, False
    try:
        if secure != "never":
            try:
                smtp = smtplib.SMTP_SSL(host=host, port=port, timeout=timeout)  # connects; raises unless 220
                secure_state = True
            except ssl.SSLError as exc:
                if secure == "always":
                    raise ChannelFailed("Unable to start an encrypted session to %s:%s: %s" % (host, port, exc)) \
                        from None
            except Exception:  # noqa: BLE001, S110 - as community.general.mail: fall back to plain SMTP
                pass
        if not secure_state:
            smtp = smtplib.SMTP(host=host, port=port, timeout=timeout)
        smtp.ehlo()
        if not secure_state and secure in ("starttls", "try"):
            if smtp.has_extn("STARTTLS"):
                smtp.starttls()
                secure_state = True
                smtp.ehlo()
            elif secure == "starttls":
                raise ChannelFailed("StartTLS is not offered on server %s:%s" % (host, port))
        if username and password:
            if not smtp.has_extn("AUTH"):
                raise ChannelFailed("No Authentication on the server at %s:%s" % (host, port))
            try:
                smtp.login(username, password)
            except smtplib.SMTPAuthenticationError:
                raise ChannelFailed("Authentication to %s:%s failed, please check your username and/or password"
                                    % (host, port)) from None
            except smtplib.SMTPException:
                raise ChannelFailed("No Suitable authentication method was found on %s:%s" % (host, port)) from None
        sender_phrase, sender_addr = parseaddr(email["sender"])
        msg = MIMEMultipart(_charset="utf-8")
        msg["From"] = formataddr((sender_phrase, sender_addr))
        msg["Date"] = formatdate(localtime=True)
        msg["Subject"] = Header(subject, "utf-8")
        msg.preamble = "Multipart message"
        msg["X-Mailer"] = "Ansible mail module"
        msg["To"] = ", ".join(to)
        msg.attach(MIMEText(body + "\n\n", _subtype="plain", _charset="utf-8"))
        try:
            smtp.sendmail(sender_addr, to, msg.as_string())
        except Exception as exc:  # noqa: BLE001
            raise ChannelFailed("Failed to send mail to '%s': %s" % (", ".join(to), exc)) from None
        smtp.quit()
    except ChannelFailed:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelFailed("Unable to Connect %s:%s: %s" % (host, port, exc)) from None
    finally:
        if smtp is not None:
            try:
                smtp.close()
            except Exception:  # noqa: BLE001, S110
                pass
    return secure_state


class ActionModule(ActionBase):
    """Send one message to every selected channel; a failed channel warns and the recovery goes on."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False
    _VALID_ARGS = frozenset(("incident", "status", "message", "channels", "severities", "http_timeout",
                             "validate_certs", *_CHANNEL_OPTIONS))

    def _settings(self, args):
        settings = {}
        for channel, defaults in _CHANNEL_OPTIONS.items():
            given = args.get(channel) or {}
            if not isinstance(given, dict):
                raise ValueError("%s must be a dictionary" % channel)
            unknown = sorted(set(given) - set(defaults))
            if unknown:
                raise ValueError("unknown %s options: %s" % (channel, ", ".join(unknown)))
            settings[channel] = dict(defaults, **given)
        return settings

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        try:
            settings = self._settings(args)
            incident = dict(args.get("incident") or {})
            problem = inc.check_incident(incident, ("incident_id", "severity", "commander", "user", "log_path"))
            if problem:
                return dict(result, failed=True, msg=problem)
            severities = args.get("severities") or {}
            if incident["severity"] not in severities:
                raise ValueError("severities has no entry for %s" % incident["severity"])
            status = str(args.get("status") or "investigating")
            timeout = float(args.get("http_timeout") or 10)
            validate_certs = boolean(args.get("validate_certs", True), strict=True)
        except (ValueError, TypeError, KeyError) as exc:
            return dict(result, failed=True, msg="incident_notify: %s" % exc)
        secrets = inc.secret_values(settings)
        try:
            return inc.scrub(self._notify(result, args, incident, status, settings, severities, timeout,
                                          validate_certs, secrets), secrets)
        except Exception as exc:  # noqa: BLE001 - never a traceback that could carry a secret
            return dict(result, failed=True, msg=inc.scrub("incident_notify: %s: %s" % (type(exc).__name__, exc),
                                                           secrets))

    def _notify(self, result, args, incident, status, settings, severities, timeout, validate_certs, secrets):
        text, subject = inc.compose(incident, status, args.get("message") or "", secrets)
        channels = inc.select_channels(args.get("channels") or [], incident, settings)
        result.update(changed=False, channels=channels, text=text, subject=subject, sent=[], not_sent=[])
        if not channels:
            result["msg"] = "No notification channel configured for %s; message not sent: %s" % (
                incident["incident_id"], text)
            return result
        if self._task.check_mode:
            result.update(changed=True, would_send=channels,
                          msg="check mode: would send to %s (nothing sent, nothing logged)" % ", ".join(channels))
            return result

        warnings, facts = [], {}
        for channel in channels:
            try:
                detail = self._send(channel, incident, status, text, subject, settings, severities, timeout,
                                    validate_certs, facts)
                entry = inc.message_entry(channel, "sent", detail, status, incident, text)
                result["sent"].append({"channel": channel, "detail": detail})
                result["changed"] = True
            except ChannelFailed as exc:
                failure = inc.failure_detail(exc.status, exc.msg, secrets)
                entry = inc.message_entry(channel, "failed", failure, status, incident, text)
                warnings.append(inc.warning_text(channel, incident["incident_id"], failure))
                result["not_sent"].append({"channel": channel, "detail": failure})
            except Exception as exc:  # noqa: BLE001 - any other error of one channel: warn, the recovery goes on
                failure = inc.failure_detail(None, "%s: %s" % (type(exc).__name__, exc), secrets)
                entry = inc.message_entry(channel, "failed", failure, status, incident, text)
                warnings.append(inc.warning_text(channel, incident["incident_id"], failure))
                result["not_sent"].append({"channel": channel, "detail": failure})
            inc.append_line(incident["log_path"], inc.log_line(incident, entry))
        if "statuspage_incident" in facts:
            result["statuspage_incident"] = facts.pop("statuspage_incident")
        if warnings:
            # the incident_timeline callback records each as a warning event; Ansible shows them as [WARNING]
            facts["incident_timeline_warning"] = warnings
            result["warnings"] = warnings
        if facts:
            result["ansible_facts"] = facts
        result["msg"] = "; ".join(
            ["%s sent (%s)" % (s["channel"], s["detail"]) for s in result["sent"]]
            + ["%s FAILED (%s)" % (f["channel"], f["detail"]) for f in result["not_sent"]])
        return result

    def _send(self, channel, incident, status, text, subject, settings, severities, timeout, validate_certs, facts):
        if channel == "slack":
            request = inc.slack_request(incident, status, text, settings["slack"])
        elif channel == "pagerduty":
            request = inc.pagerduty_request(incident, status, text, settings["pagerduty"], severities)
        elif channel == "statuspage":
            request = inc.statuspage_request(incident, status, text, subject, settings["statuspage"], severities)
        elif channel == "email":
            smtp_send(settings["email"], subject, inc.email_body(incident, status, text), timeout)
            return inc.email_detail(settings["email"])
        else:
            raise ChannelFailed("unknown channel %s (one of %s)" % (channel, ", ".join(inc.CHANNELS)))
        code, data = http_send(request, inc.ACCEPTED[channel], timeout, validate_certs)
        if channel == "statuspage":
            remembered = inc.remembered_statuspage(incident, data)
            if remembered is not None:  # set_fact by the role: a set_fact fact outranks one an action returns
                facts["statuspage_incident"] = {"id": remembered["statuspage_incident_id"], "incident": remembered}
        return "HTTP %s" % code

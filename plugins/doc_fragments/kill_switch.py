# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of the trading bot's (minibot's) kill-switch API (argument spec: module_utils/_killswitch.py).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the bot's HTTP API, for example V(http://127.0.0.1:9091).
      - The module calls C(GET /health), C(GET /api/kill-switch), C(POST /api/kill-switch/trigger)
        and C(POST /api/kill-switch/reset) under it.
      - If not set, the E(AGBOT_KILL_SWITCH_URL) environment variable is used.
    type: str
    required: true
  token:
    description:
      - "Bearer token the bot expects on kill-switch requests (C(Authorization: Bearer <token>))."
      - If not set, the E(AGBOT_KILL_SWITCH_TOKEN) environment variable is used.
      - Never returned or logged.
    type: str
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: float
    default: 10
  retries:
    description:
      - How many times to retry a request that failed with a connection error, a timeout or an HTTP 5xx
        answer, with exponential backoff (0.5 s, 1 s, 2 s, ... capped at 8 s). A rejected token (HTTP 401/403)
        is never retried.
    type: int
    default: 3
  validate_certs:
    description:
      - Whether to validate the bot's TLS certificate when O(url) is https.
    type: bool
    default: true
"""

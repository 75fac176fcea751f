#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rtds_probe
short_description: Prove the RTDS market-data websocket delivers ticks, and measure it
version_added: 0.1.0
description:
  - 'Connects to the RTDS websocket, sends C({"type": "subscribe", "markets": [...]}), and reads
    O(ticks) tick messages (C({"type": "tick", "seq": n, "ts": iso, "market": m, "price": p})) within
    O(timeout) seconds.'
  - Reports the latency from each tick's C(ts) to its receipt (min, avg, max, p95 in milliseconds), the sequence
    numbers that never arrived (gaps), duplicates, out-of-order ticks and the count per market.
  - Fails with a message naming the cause when the connection is refused or the handshake rejected, when the feed
    stalls (no tick for O(stall_timeout) seconds, or fewer than O(ticks) within O(timeout)), when more than
    O(max_gaps) sequence numbers are missing, or when the p95 latency exceeds O(max_latency_ms). What was measured
    is returned with the failure too.
  - This is the "Verify RTDS connectivity" step of DR_PLAN.md section 1.
  - Latency compares the server's clock with this host's; across hosts it includes their clock offset.
requirements:
  - websockets >= 13 (the sync client) on the host that runs the module
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  url:
    description:
      - Websocket URL of the feed, for example V(wss://rtds.ag-botkit.example.com/ws).
    type: str
    required: true
  markets:
    description:
      - Markets to subscribe to.
    type: list
    elements: str
    default: [BTC-USD]
  ticks:
    description:
      - How many ticks to receive.
    type: int
    default: 20
  timeout:
    description:
      - Seconds allowed to receive O(ticks) ticks after subscribing.
    type: float
    default: 10
  connect_timeout:
    description:
      - Seconds allowed to open the websocket.
    type: float
    default: 5
  stall_timeout:
    description:
      - A gap of this many seconds between two ticks is a stall.
    type: float
    default: 2
  max_gaps:
    description:
      - How many missing sequence numbers are tolerated.
    type: int
    default: 0
  max_latency_ms:
    description:
      - Fail when the p95 latency is above this many milliseconds. Not set, latency is only reported.
    type: float
attributes:
  check_mode:
    support: full
    description: The probe is read-only; it runs in check mode too.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: ansible.builtin.uri
    description: The HTTP health endpoints are checked with it.
notes:
  - The module never changes anything; RV(ignore:changed) is always false.
"""

EXAMPLES = r"""
- name: Verify RTDS connectivity from the recovery region
  agbotkit.dr.rtds_probe:
    url: wss://rtds.ag-botkit.example.com/ws
    markets: [BTC-USD, ETH-USD]
    ticks: 30
    timeout: 15
    max_gaps: 0
  register: rtds

- name: Show latency
  ansible.builtin.debug:
    msg: "p95 {{ rtds.latency_ms.p95 }} ms over {{ rtds.received }} ticks, {{ rtds.gaps }} gaps"
"""

RETURN = r"""
url:
  description: The URL probed.
  returned: always
  type: str
received:
  description: Ticks received.
  returned: always
  type: int
  sample: 20
expected:
  description: Ticks asked for (O(ticks)).
  returned: always
  type: int
connect_ms:
  description: Milliseconds to open the websocket.
  returned: success
  type: float
latency_ms:
  description: Latency from the tick's C(ts) to its receipt, in milliseconds; null values when nothing arrived.
  returned: always
  type: dict
  contains:
    min:
      description: Lowest.
      type: float
    avg:
      description: Mean.
      type: float
    max:
      description: Highest.
      type: float
    p95:
      description: 95th percentile (nearest rank).
      type: float
  sample: {"min": 0.4, "avg": 0.9, "max": 2.1, "p95": 1.8}
gaps:
  description: Sequence numbers missing between consecutive ticks.
  returned: always
  type: int
gap_ranges:
  description: First and last missing sequence number of each gap.
  returned: always
  type: list
  elements: list
  sample: [[6, 8]]
duplicates:
  description: Ticks repeating the previous sequence number.
  returned: always
  type: int
out_of_order:
  description: Ticks with a lower sequence number than the previous one.
  returned: always
  type: int
first_seq:
  description: Sequence number of the first tick.
  returned: always
  type: int
last_seq:
  description: Highest sequence number seen in order.
  returned: always
  type: int
per_market:
  description: Ticks received per market.
  returned: always
  type: dict
  sample: {"BTC-USD": 20}
other_messages:
  description: Messages that were not ticks.
  returned: success
  type: int
duration_seconds:
  description: Wall time of the probe.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.agbotkit.dr.plugins.module_utils._rtds import (
    RtdsProbeError,
    evaluate,
    probe,
)


def run(module: AnsibleModule, result: dict) -> dict:
    p = module.params
    if p["ticks"] < 1:
        raise RtdsProbeError("ticks must be at least 1")
    if not p["markets"]:
        raise RtdsProbeError("markets must name at least one market")
    probed = probe(p["url"], p["markets"], p["ticks"], p["timeout"], p["connect_timeout"], p["stall_timeout"])
    evaluate(probed, p["max_gaps"], p["max_latency_ms"])
    return probed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            markets=dict(type="list", elements="str", default=["BTC-USD"]),
            ticks=dict(type="int", default=20),
            timeout=dict(type="float", default=10.0),
            connect_timeout=dict(type="float", default=5.0),
            stall_timeout=dict(type="float", default=2.0),
            max_gaps=dict(type="int", default=0),
            max_latency_ms=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    # a failure reports the url even when the error does not name it
    run_module(module, run, result={"changed": False, "url": module.params["url"]})


if __name__ == "__main__":
    main()

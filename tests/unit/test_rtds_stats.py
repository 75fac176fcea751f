"""Pure statistics of agbotkit.dr.rtds_probe (plugins/module_utils/_rtds.py)."""

from __future__ import annotations

import json

import pytest
from ansible_collections.agbotkit.dr.plugins.module_utils import _rtds


def test_parse_ts_z_and_offset_agree():
    assert _rtds.parse_ts("2025-01-01T00:00:00.500Z") == pytest.approx(1735689600.5)
    assert _rtds.parse_ts("2025-01-01T01:00:00.500+01:00") == pytest.approx(1735689600.5)
    assert _rtds.parse_ts("2025-01-01T00:00:00") == pytest.approx(1735689600.0)


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert _rtds.percentile(values, 95) == 95
    assert _rtds.percentile(values, 100) == 100
    assert _rtds.percentile([7.0], 95) == 7.0
    assert _rtds.percentile([], 95) is None


def test_latency_stats():
    stats = _rtds.latency_stats([1.0, 2.0, 3.0, 10.0])
    assert stats == {"min": 1.0, "avg": 4.0, "max": 10.0, "p95": 10.0}
    assert _rtds.latency_stats([]) == {"min": None, "avg": None, "max": None, "p95": None}


def test_sequence_no_gaps():
    stats = _rtds.sequence_stats([1, 2, 3, 4])
    assert stats["gaps"] == 0
    assert stats["gap_ranges"] == []
    assert (stats["first_seq"], stats["last_seq"]) == (1, 4)


def test_sequence_gaps_duplicates_out_of_order():
    stats = _rtds.sequence_stats([1, 2, 6, 6, 5, 7, 10])
    assert stats["gaps"] == 3 + 2
    assert stats["gap_ranges"] == [[3, 5], [8, 9]]
    assert stats["duplicates"] == 1
    assert stats["out_of_order"] == 1


def test_sequence_empty():
    stats = _rtds.sequence_stats([])
    assert stats["gaps"] == 0
    assert stats["first_seq"] is None


def test_summarize_and_evaluate():
    ticks = [{"seq": s, "market": "BTC-USD", "latency_ms": 1.0} for s in (1, 2, 3, 7)]
    summary = _rtds.summarize(ticks, 4)
    assert summary["received"] == 4
    assert summary["gaps"] == 3
    assert summary["per_market"] == {"BTC-USD": 4}
    _rtds.evaluate(summary, max_gaps=3, max_latency_ms=None)
    with pytest.raises(_rtds.RtdsGapError, match="3 sequence number"):
        _rtds.evaluate(summary, max_gaps=0, max_latency_ms=None)
    with pytest.raises(_rtds.RtdsLatencyError):
        _rtds.evaluate(summary, max_gaps=5, max_latency_ms=0.5)


class _FakeWs:
    def __init__(self, messages):
        self.messages = list(messages)
        self.sent = []

    def send(self, data):
        self.sent.append(json.loads(data))

    def recv(self, timeout=None):
        if not self.messages:
            raise TimeoutError
        return self.messages.pop(0)

    def close(self):
        pass


def test_probe_with_fake_socket_counts_and_latency():
    msgs = [json.dumps({"type": "subscribed"})] + [
        json.dumps({"type": "tick", "seq": n, "ts": "2025-01-01T00:00:00Z", "market": "BTC-USD", "price": 1})
        for n in (1, 2, 4)]
    ws = _FakeWs(msgs)
    out = _rtds.probe("ws://x/ws", ["BTC-USD"], 3, 5, 1, 1, clock=lambda: 1735689600.002,
                      connect=lambda *a, **k: ws)
    assert ws.sent == [{"type": "subscribe", "markets": ["BTC-USD"]}]
    assert out["received"] == 3
    assert out["gaps"] == 1
    assert out["other_messages"] == 1
    assert out["latency_ms"]["max"] == pytest.approx(2.0, abs=0.01)


def test_probe_stall_is_reported_with_figures():
    ws = _FakeWs([json.dumps({"type": "tick", "seq": 1, "ts": "2025-01-01T00:00:00Z", "market": "BTC-USD"})])
    with pytest.raises(_rtds.RtdsStallError, match="stalled") as err:
        _rtds.probe("ws://x/ws", ["BTC-USD"], 5, 5, 1, 0.1, connect=lambda *a, **k: ws)
    assert err.value.details["received"] == 1


def test_probe_connection_refused():
    def refuse(*_a, **_k):
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(_rtds.RtdsConnectError, match="connection refused"):
        _rtds.probe("ws://127.0.0.1:9/ws", ["BTC-USD"], 1, 1, 1, 1, connect=refuse)

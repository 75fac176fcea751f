# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RTDS (market-data websocket) probe: connect, subscribe, receive ticks, measure.

The statistics are pure functions (unit tested in tests/unit/test_rtds_stats.py); probe() does the I/O with the
`websockets` sync client and raises RtdsProbeError subclasses, which the module turns into fail_json once.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import (
    RtdsConnectError,
    RtdsGapError,
    RtdsLatencyError,
    RtdsProbeError,
    RtdsStallError,
)

try:
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect as ws_connect
    HAS_WEBSOCKETS = True
    WEBSOCKETS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the target
    HAS_WEBSOCKETS = False
    WEBSOCKETS_IMPORT_ERROR = exc

    class WebSocketException(Exception):  # type: ignore[no-redef]
        """Stand-in so the except clauses below stay valid without websockets."""

    class InvalidStatus(WebSocketException):  # type: ignore[no-redef]
        """Stand-in so the except clauses below stay valid without websockets."""

    ws_connect = None


# ------------------------------------------------------------------------------------------ pure statistics
def parse_ts(value: str) -> float:
    """ISO-8601 timestamp (``...Z`` or with an offset) to epoch seconds; naive means UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100) of values; None for an empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_stats(latencies_ms: list[float]) -> dict:
    """min/avg/max/p95 in milliseconds, rounded to 0.001; all None when nothing was received."""
    if not latencies_ms:
        return {"min": None, "avg": None, "max": None, "p95": None}
    return {
        "min": round(min(latencies_ms), 3),
        "avg": round(sum(latencies_ms) / len(latencies_ms), 3),
        "max": round(max(latencies_ms), 3),
        "p95": round(percentile(latencies_ms, 95), 3),
    }


def sequence_stats(seqs: list[int]) -> dict:
    """Gaps in a stream of sequence numbers, in arrival order.

    gaps: how many sequence numbers are missing between consecutive ticks; gap_ranges: [first, last] of each
    missing run; duplicates / out_of_order: ticks whose seq is equal to / lower than the previous one.
    """
    gaps = duplicates = out_of_order = 0
    ranges: list[list[int]] = []
    prev = None
    for seq in seqs:
        if prev is not None:
            if seq == prev:
                duplicates += 1
                continue
            if seq < prev:
                out_of_order += 1
                continue
            if seq > prev + 1:
                gaps += seq - prev - 1
                ranges.append([prev + 1, seq - 1])
        prev = seq
    return {"gaps": gaps, "gap_ranges": ranges, "duplicates": duplicates, "out_of_order": out_of_order,
            "first_seq": seqs[0] if seqs else None, "last_seq": prev}


def summarize(ticks: list[dict], expected: int) -> dict:
    """Figures of a probe from its received ticks [{"seq", "market", "latency_ms"}, ...]."""
    seqs = [t["seq"] for t in ticks if t.get("seq") is not None]
    lat = [t["latency_ms"] for t in ticks if t.get("latency_ms") is not None]
    markets: dict[str, int] = {}
    for tick in ticks:
        markets[tick.get("market") or "?"] = markets.get(tick.get("market") or "?", 0) + 1
    out = {"received": len(ticks), "expected": expected, "latency_ms": latency_stats(lat), "per_market": markets}
    out.update(sequence_stats(seqs))
    return out


def evaluate(summary: dict, max_gaps: int, max_latency_ms: float | None) -> None:
    """Raise when the figures break a threshold."""
    if summary["gaps"] > max_gaps:
        raise RtdsGapError(
            f"RTDS feed has gaps: {summary['gaps']} sequence number(s) missing in {summary['received']} ticks "
            f"(allowed {max_gaps}); missing runs {summary['gap_ranges'][:10]}", **summary)
    p95 = summary["latency_ms"]["p95"]
    if max_latency_ms is not None and p95 is not None and p95 > max_latency_ms:
        raise RtdsLatencyError(f"RTDS tick latency p95 {p95} ms is above the allowed {max_latency_ms} ms", **summary)


# ----------------------------------------------------------------------------------------------------- I/O
def probe(url: str, markets: list[str], ticks: int, timeout: float, connect_timeout: float,
          stall_timeout: float, clock=time.time, connect=None) -> dict:
    """Connect, subscribe to markets, read `ticks` ticks within `timeout` seconds; return summarize()."""
    connect = connect or ws_connect
    if connect is None:
        raise RtdsProbeError(
            "The Python library 'websockets' (>= 13, sync client) is required by agbotkit.dr.rtds_probe on the "
            f"host that runs it; install it there (pip install websockets): {WEBSOCKETS_IMPORT_ERROR}")
    started = time.monotonic()
    try:
        ws = connect(url, open_timeout=connect_timeout, close_timeout=1)
    except InvalidStatus as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise RtdsConnectError(f"Failed to connect to RTDS {url}: the server rejected the websocket handshake "
                               f"with HTTP {status}", url=url, received=0, expected=ticks) from exc
    except (OSError, TimeoutError, WebSocketException) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else f"{type(exc).__name__}: {exc}"
        raise RtdsConnectError(f"Failed to connect to RTDS {url}: {reason}", url=url, received=0,
                               expected=ticks) from exc
    connect_ms = round((time.monotonic() - started) * 1000, 3)
    received: list[dict] = []
    others = 0
    try:
        ws.send(json.dumps({"type": "subscribe", "markets": markets}))
        deadline = time.monotonic() + timeout
        while len(received) < ticks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                summary = summarize(received, ticks)
                raise RtdsStallError(
                    f"RTDS delivered {len(received)} of {ticks} ticks within {timeout} s", url=url,
                    connect_ms=connect_ms, **summary)
            try:
                raw = ws.recv(timeout=min(stall_timeout, remaining))
            except TimeoutError as exc:
                if deadline - time.monotonic() <= 0:
                    continue
                summary = summarize(received, ticks)
                raise RtdsStallError(
                    f"RTDS stalled: no tick for {stall_timeout} s after {len(received)} of {ticks} ticks", url=url,
                    connect_ms=connect_ms, **summary) from exc
            except WebSocketException as exc:
                summary = summarize(received, ticks)
                raise RtdsStallError(f"RTDS closed the connection after {len(received)} of {ticks} ticks: {exc}",
                                     url=url, connect_ms=connect_ms, **summary) from exc
            now = clock()
            try:
                msg = json.loads(raw)
            except (TypeError, ValueError):
                others += 1
                continue
            if not isinstance(msg, dict) or msg.get("type") != "tick":
                others += 1
                continue
            latency = None
            if msg.get("ts"):
                try:
                    latency = (now - parse_ts(str(msg["ts"]))) * 1000.0
                except ValueError:
                    latency = None
            received.append({"seq": msg.get("seq"), "market": msg.get("market"), "latency_ms": latency})
    finally:
        try:
            ws.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken socket is best effort
            pass
    summary = summarize(received, ticks)
    summary.update(url=url, connect_ms=connect_ms, other_messages=others,
                   duration_seconds=round(time.monotonic() - started, 3))
    return summary

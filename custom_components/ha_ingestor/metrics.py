"""Sliding one-minute windows behind the rate and latency sensors.

Fed per batch or per sensor update, never per event: the per-event path only
counts (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque
from typing import Final

WINDOW_NS: Final = 60_000_000_000
# The shortest span a rate is given for: the health entities' refresh interval.
MIN_SPAN_NS: Final = 30_000_000_000


class LatencyWindow:
    """Event time to confirmed write, sampled from written batches."""

    def __init__(self) -> None:
        self._samples: deque[tuple[int, int]] = deque()

    def add(self, written_ns: int, event_times_ns: list[int]) -> None:
        """Record a confirmed batch by a sample of its points' event times."""
        samples = self._samples
        samples.extend((written_ns, written_ns - event) for event in event_times_ns)
        self._forget(written_ns)

    def p95_ms(self, now_ns: int) -> float | None:
        """The 95th percentile over the last minute, in ms (None: no writes)."""
        self._forget(now_ns)
        if not self._samples:
            return None
        latencies = sorted(latency for _, latency in self._samples)
        return round(latencies[int(0.95 * (len(latencies) - 1))] / 1e6, 1)

    def _forget(self, now_ns: int) -> None:
        samples = self._samples
        while samples and samples[0][0] < now_ns - WINDOW_NS:
            samples.popleft()


class RateWindow:
    """A counter's increase over the last minute, from readings of it."""

    def __init__(self) -> None:
        self._readings: deque[tuple[int, int]] = deque()

    def per_minute(self, now_ns: int, count: int) -> float | None:
        """Take a reading and return the increase per minute over the window;
        None until the readings span ``MIN_SPAN_NS`` (a rate extrapolated from
        a few seconds, e.g. right after a reload, would be far off)."""
        readings = self._readings
        readings.append((now_ns, count))
        while len(readings) > 2 and readings[1][0] <= now_ns - WINDOW_NS:
            readings.popleft()
        first_ns, first = readings[0]
        if now_ns - first_ns < MIN_SPAN_NS:
            return None
        return round((count - first) * WINDOW_NS / (now_ns - first_ns), 1)

"""The memory queue: points waiting for delivery, as pieces of their lines.

Kept apart from the delivery logic because it is on the per-event path and its
layout is what keeps holding 100,000 points cheap (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class LineQueue:
    """Lines waiting in memory, oldest first.

    A state point waits as three pieces of its line in parallel deques of
    strings: its entity's series key and rarely changing fields (cached strings
    shared by the entity's points) and its own fields; other lines wait whole,
    with empty shared pieces. Holding 100,000 points then costs their own fields
    only, and no per-point tuple: tuples are tracked by the garbage collector,
    and one per point measurably cost CPU per event.
    """

    __slots__ = ("keys", "rests", "shared")

    def __init__(self) -> None:
        self.keys: deque[str] = deque()
        self.shared: deque[str] = deque()
        self.rests: deque[str] = deque()

    def __len__(self) -> int:
        return len(self.rests)

    def take(self, count: int) -> QueuedBatch:
        """The first ``count`` points, removed."""
        keys, shared, rests = self.keys, self.shared, self.rests
        return QueuedBatch(
            [keys.popleft() for _ in range(count)],
            [shared.popleft() for _ in range(count)],
            [rests.popleft() for _ in range(count)],
        )

    def drop_oldest(self, count: int) -> None:
        """Forget the first ``count`` points."""
        for pieces in (self.keys, self.shared, self.rests):
            for _ in range(count):
                pieces.popleft()

    def put_back(self, batch: QueuedBatch) -> None:
        """Return a batch to the front of the queue, in its order."""
        self.keys.extendleft(reversed(batch.keys))
        self.shared.extendleft(reversed(batch.shared))
        self.rests.extendleft(reversed(batch.rests))


@dataclass(slots=True)
class QueuedBatch:
    """Points taken from the queue, still in pieces."""

    keys: list[str]
    shared: list[str]
    rests: list[str]

    def __len__(self) -> int:
        return len(self.rests)

    def body(self) -> bytes:
        """The request body, joined in one pass: every line's pieces and its
        newline go in one list, so no line is built as a string of its own
        (measured: about half the cost of joining whole lines)."""
        count = len(self.rests)
        parts = ["\n"] * (4 * count)
        parts[0::4] = self.keys
        parts[1::4] = self.shared
        parts[2::4] = self.rests
        # A lone surrogate (HA keeps undecodable bytes that way) becomes "?".
        return "".join(parts).encode("utf-8", "replace")

    def sample_times_ns(self, count: int = 20) -> list[int]:
        """The timestamps of about ``count`` of its points, spread over it (each
        line ends with its time): enough for a latency percentile."""
        rests = self.rests
        step = max(1, len(rests) // count)
        times = []
        for rest in rests[::step]:
            if (time_ns := line_time_ns(rest)) is not None:
                times.append(time_ns)
        return times

    def lines(self) -> list[str]:
        """The points as whole lines (to split a refused batch, or to spool)."""
        return [
            key + shared + rest
            for key, shared, rest in zip(
                self.keys, self.shared, self.rests, strict=True
            )
        ]


def line_time_ns(line: str) -> int | None:
    """A line-protocol line's timestamp (its last word), if it has one."""
    _, _, word = line.rpartition(" ")
    try:
        return int(word)
    except ValueError:
        return None

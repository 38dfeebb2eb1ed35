"""Batching and delivery: lines queue in memory and are written in batches of up to
``batch_size``, at least every ``flush_interval`` seconds, by one consumer task.

A batch counts as written only once the server confirmed it. When a write fails,
or memory holds more than ``max_memory_points``, batches move to the durable spool
and are replayed oldest first once the server answers again, spool before memory.
Retries back off exponentially with jitter (1 s to 5 min) or as ``Retry-After``
says; while backing off nothing is sent (an open circuit) and the next write is
the probe. Refused credentials stop writing until the user reauthenticates;
lines the server refuses go to the dead letters. Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import random
import time
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.util import dt as dt_util

from .const import LOGGER
from .spool import Spool, SpooledBatch
from .stats import IngestorStats
from .writer import (
    InfluxWriter,
    InvalidAuth,
    Rejected,
    RetryLater,
    TargetNotFound,
    WriteError,
)

# Two writes in flight: InfluxDB ingests about twice as fast as with one (measured
# on 1.6.7), and more would only queue on a small machine.
MAX_IN_FLIGHT: Final = 2
BACKOFF_START: Final = 1.0
BACKOFF_MAX: Final = 300.0


@dataclass(kw_only=True)
class PipelineHooks:
    """What the pipeline tells Home Assistant about (repairs, reauth)."""

    auth_failed: Callable[[], object] = lambda: None
    target_missing: Callable[[str], object] = lambda message: None
    spool_full: Callable[[int], object] = lambda dropped: None
    recovered: Callable[[], object] = lambda: None


class Pipeline:
    """The queue between the capture callbacks and the writer."""

    def __init__(
        self,
        hass: HomeAssistant,
        writer: InfluxWriter,
        spool: Spool,
        stats: IngestorStats,
        *,
        batch_size: int,
        flush_interval: float,
        max_memory_points: int,
        hooks: PipelineHooks | None = None,
    ) -> None:
        self._hass = hass
        self._writer = writer
        self._spool = spool
        self._stats = stats
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self.hooks = hooks or PipelineHooks()
        self._queue = LineQueue()
        self._add_key = self._queue.keys.append
        self._add_shared = self._queue.shared.append
        self._add_own = self._queue.rests.append
        self._owns = self._queue.rests
        # A full batch, or more than memory may hold, wakes the consumer.
        self._wake_at = min(batch_size, max_memory_points + 1)
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._retry_at = 0.0
        self._paused = False

    @property
    def queued(self) -> int:
        """Points waiting in memory."""
        return len(self._queue)

    @property
    def spool(self) -> Spool:
        """The durable spool."""
        return self._spool

    @property
    def paused(self) -> bool:
        """True while the server refuses the credentials."""
        return self._paused

    @callback
    def add(self, line: str) -> None:
        """Queue one line; never blocks and never raises."""
        self.add_point("", "", line)

    @callback
    def add_point(self, series_key: str, shared: str, own: str) -> None:
        """Queue a point given as pieces of its line: two strings shared with
        other points of its entity, and its own. Runs for every event: the
        deques' methods are bound once, in ``__init__``."""
        self._add_key(series_key)
        self._add_shared(shared)
        self._add_own(own)
        self._stats.points_queued += 1
        if len(self._owns) >= self._wake_at:
            self._wakeup.set()

    async def async_run(self) -> None:
        """Consumer task: flush on a full batch or every flush interval."""
        loop = self._hass.loop
        next_flush = loop.time() + self._flush_interval
        while True:
            try:
                async with asyncio.timeout_at(next_flush):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            # The interval counts from the start of a flush: no point waits
            # longer than one interval plus its write.
            next_flush = loop.time() + self._flush_interval
            await self.async_flush()

    async def async_flush(self, *, force: bool = False) -> bool:
        """Write what is spooled, then what is queued; True when all is written.

        While the circuit is open (backing off, or credentials refused) the memory
        queue goes to the spool instead, unless ``force`` asks for a probe now.
        """
        async with self._lock:
            if not force and (self._paused or time.monotonic() < self._retry_at):
                await self._async_spool_memory()
                return False
            try:
                await self._async_drain_spool()
                await self._async_drain_memory()
            except WriteError as err:
                self._on_error(err)
                await self._async_spool_memory()
                return False
            self._on_success()
            return True

    async def async_shutdown(self, grace: float) -> None:
        """Write what can be written in time; spool the rest (unload, HA stop)."""
        try:
            async with asyncio.timeout(grace):
                await self.async_flush()
        except TimeoutError:
            LOGGER.warning("InfluxDB did not answer in time; the rest stays spooled")
        async with self._lock:
            await self._async_spool_memory()

    async def _async_drain_spool(self) -> None:
        """Replay the spool, oldest first, ``MAX_IN_FLIGHT`` batches at a time.

        Spooled bodies are sent as stored, and the next batches are read from
        disk while these are written (replay speed is what ends an outage).
        """
        if not self._spool.batches:
            return
        run, peek = self._hass.async_add_executor_job, self._spool.peek
        batches = await run(peek, MAX_IN_FLIGHT, 0)
        while batches:
            upcoming = run(peek, MAX_IN_FLIGHT, batches[-1].id)
            try:
                results = await asyncio.gather(
                    *(self._async_write_spooled(batch) for batch in batches),
                    return_exceptions=True,
                )
                written = [
                    b for b, r in zip(batches, results, strict=True) if r is None
                ]
                if written:
                    await run(self._spool.ack, [batch.id for batch in written])
                    self._stats.points_replayed += sum(b.points for b in written)
                _raise_first(results)
            except BaseException:
                upcoming.cancel()
                raise
            batches = await upcoming

    async def _async_drain_memory(self) -> None:
        """Write the memory queue, ``MAX_IN_FLIGHT`` batches at a time.

        Batches leave the queue while they are written; any that is not confirmed
        (an error, or cancellation at shutdown) goes back to its front, in order.
        """
        queue = self._queue
        while queue:
            batches: list[QueuedBatch] = []
            while queue and len(batches) < MAX_IN_FLIGHT:
                count = min(self._batch_size, len(queue))
                batches.append(queue.take(count))
            results: list[BaseException | None] = [None] * len(batches)
            finished = False
            try:
                results = await asyncio.gather(
                    *(
                        self._async_write_body(batch.body(), len(batch), batch.lines)
                        for batch in batches
                    ),
                    return_exceptions=True,
                )
                finished = True
            finally:
                # Cancelled mid-write, nobody knows what landed: requeue it all
                # (a point written twice overwrites itself).
                pairs = list(zip(batches, results, strict=True))
                for batch, result in reversed(pairs):
                    if not finished or result is not None:
                        queue.put_back(batch)
            _raise_first(results)

    async def _async_spool_memory(self) -> None:
        """Move the memory queue to disk, a batch at a time."""
        queue = self._queue
        while queue:
            count = min(self._batch_size, len(queue))
            dropped = await self._hass.async_add_executor_job(
                self._spool.append, queue.take(count).lines()
            )
            self._stats.points_spooled += count
            if dropped:
                self._stats.dropped_points += dropped
                self._stats.log_once(
                    "spool_full",
                    "The spool is full; dropped the %s oldest points (counted in "
                    "diagnostics and the dropped points sensor)",
                    dropped,
                )
                self.hooks.spool_full(self._stats.dropped_points)

    async def _async_write_spooled(self, batch: SpooledBatch) -> None:
        await self._async_write_body(batch.body, batch.points, lambda: batch.lines)

    async def _async_write_lines(self, lines: list[str]) -> None:
        # A lone surrogate (HA keeps undecodable bytes that way) becomes "?".
        body = "\n".join(lines).encode("utf-8", "replace")
        await self._async_write_body(body, len(lines), lambda: lines)

    async def _async_write_body(
        self, body: bytes, points: int, lines: Callable[[], list[str]]
    ) -> None:
        """Write a batch; a refused batch is split until only bad lines are left,
        which go to the dead letters."""
        try:
            await self._writer.async_write(body)
        except Rejected as err:
            batch = lines()
            if len(batch) == 1:
                await self._hass.async_add_executor_job(
                    self._spool.add_dead_letters, batch, str(err)
                )
                self._stats.rejected_points += 1
                self._stats.log_once(
                    "rejected",
                    "InfluxDB refused a point; it is kept as a dead letter: %s",
                    err,
                )
                return
            middle = len(batch) // 2
            await self._async_write_lines(batch[:middle])
            await self._async_write_lines(batch[middle:])
            return
        self._stats.points_written += points
        self._stats.batches_written += 1
        self._stats.last_write = dt_util.utcnow()

    def _on_success(self) -> None:
        self._backoff = 0.0
        self._retry_at = 0.0
        if self._stats.last_error is not None:
            LOGGER.info("Writing to InfluxDB works again")
            self._stats.last_error = None
            self.hooks.recovered()

    def _on_error(self, err: WriteError) -> None:
        self._stats.write_errors += 1
        if self._stats.last_error is None:
            LOGGER.warning("Cannot write to InfluxDB, spooling and retrying: %s", err)
        self._stats.last_error = str(err)
        if isinstance(err, InvalidAuth):
            self._paused = True
            self.hooks.auth_failed()
            return
        if isinstance(err, TargetNotFound):
            self.hooks.target_missing(str(err))
        retry_after = err.retry_after if isinstance(err, RetryLater) else None
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_START, self._backoff * 2))
        delay = retry_after or self._backoff * random.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay

    def resume(self) -> None:
        """Write again (new credentials); the next flush probes the server."""
        self._paused = False
        self._retry_at = 0.0
        self._wakeup.set()


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

    def lines(self) -> list[str]:
        """The points as whole lines (to split a refused batch, or to spool)."""
        return [
            key + shared + rest
            for key, shared, rest in zip(
                self.keys, self.shared, self.rests, strict=True
            )
        ]


def _raise_first(results: list[BaseException | None]) -> None:
    """Re-raise the first failure of a batch of concurrent writes."""
    for result in results:
        if result is not None:
            raise result

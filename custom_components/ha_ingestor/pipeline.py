"""Batching and delivery: lines queue in memory and one supervised consumer task
writes them in batches of up to ``batch_size``, as the batching rule in
``Pipeline._start_due`` allows: at once when the writer is idle, in growing
batches while writes are in flight, and never later than ``flush_interval``.

A point leaves memory only once the server or the spool holds it: batches taken
for a write or a move to the spool go back to the queue's front when that fails
or is cancelled, and a move already under way in the executor settles itself.
Memory is bounded: above ``max_memory_points`` the oldest points move to the
spool, and if the spool cannot take them the oldest are dropped, counted and
reported. Retries back off exponentially with jitter (1 s to 5 min, or as a
capped ``Retry-After`` says) on a Home Assistant timer; while backing off nothing
is sent and the next write is the probe. Refused credentials stop writing until
the user reauthenticates; lines the server refuses go to the dead letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
import math
import random
import time
from typing import Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from . import issues
from .const import BACKOFF_MAX, DOMAIN, LOGGER
from .health import (
    DROP_DAMAGED,
    DROP_MEMORY_FULL,
    DROP_REJECTED,
    DROP_SHUTDOWN,
    DROP_SPOOL_FULL,
    DeliveryHealth,
    PipelineHooks,
)
from .line_queue import LineQueue, QueuedBatch, line_time_ns
from .metrics import LatencyWindow
from .spool import Spool, SpooledBatch, SpoolError, SpoolRead
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
# The shortest time between the starts of two partial batches while nothing is in
# flight: short enough for a live dashboard, long enough that a steady stream
# costs at most 20 requests per second (docs/benchmarks.md).
LINGER: Final = 0.05
# A partial batch this large is written at once when nothing is in flight: at high
# rates points then wait less than LINGER, in batches no smaller than the
# built-in integration's.
WORTH_A_WRITE: Final = 100
BACKOFF_START: Final = 1.0
# Bounds on shutdown: the last write, and moving what is left to the spool.
WRITE_DEADLINE: Final = 10.0
SPOOL_DEADLINE: Final = 30.0
TASK_STOP_TIMEOUT: Final = 5.0
OUTAGE_ALERT: Final = timedelta(minutes=15)


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
        outage_alert: timedelta = OUTAGE_ALERT,
        hooks: PipelineHooks | None = None,
        sink: str = "InfluxDB",
    ) -> None:
        self._hass = hass
        # The destination as log messages name it ("InfluxDB", "the webhook").
        self._sink = sink
        self._writer = writer
        self._spool = spool
        self._stats = stats
        # Two batches in flight must fit in memory's bound.
        self._batch_size = batch_size = min(batch_size, max_memory_points)
        self._flush_interval = flush_interval
        self._max_memory = max_memory_points
        self._outage_alert = outage_alert
        self.health = DeliveryHealth(
            hass, stats, hooks or PipelineHooks(), spool.path, sink
        )
        self._queue = LineQueue()
        self._add_key = self._queue.keys.append
        self._add_shared = self._queue.shared.append
        self._add_own = self._queue.rests.append
        self._owns = self._queue.rests
        # The queue's length at which add_point next calls _on_backlog (see
        # _rearm); 1 while the queue is empty.
        self._full = min(batch_size, max_memory_points)
        self._wake_at = 1
        self._empty = True
        self._linger = min(LINGER, flush_interval)
        # Loop time since which the queue's oldest point waits (or earlier).
        self._head_since = 0.0
        self._last_start = -math.inf
        self._last_flush = 0.0
        self._not_before = 0.0
        self._kick = False
        # Writes in flight, each with its batch and the order it was taken in.
        self._flights: dict[asyncio.Task[None], tuple[int, QueuedBatch]] = {}
        self._taken = 0
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._entry: ConfigEntry | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._overflow: asyncio.Task[None] | None = None
        self._moves: set[asyncio.Future[int]] = set()
        self.writing = 0
        self.moving = 0
        self._backoff = 0.0
        self._circuit_open = False
        self._cancel_retry: CALLBACK_TYPE | None = None
        self._paused = False
        self._closed = False
        self.latency = LatencyWindow()
        # Whether the last write (or the startup probe) succeeded; None: not yet.
        self.connected: bool | None = None

    @property
    def queued(self) -> int:
        """Points waiting in memory."""
        return len(self._queue)

    @property
    def held(self) -> int:
        """Points in memory: queued, being written, being moved to the spool."""
        return len(self._queue) + self.writing + self.moving

    def oldest_queued_ns(self) -> int | None:
        """The event time of the oldest point waiting in memory, if any."""
        rests = self._queue.rests
        return line_time_ns(rests[0]) if rests else None

    @property
    def server_version(self) -> str | None:
        """The server's version as it last said, if it did."""
        return self._writer.server_version

    @property
    def max_memory_points(self) -> int:
        """The bound on points held in memory (plus one batch)."""
        return self._max_memory

    @property
    def spool(self) -> Spool:
        """The durable spool."""
        return self._spool

    @property
    def spool_error(self) -> str | None:
        """Why the spool cannot be written right now, if it cannot."""
        return self.health.spool_error

    @property
    def paused(self) -> bool:
        """True while the server refuses the credentials."""
        return self._paused

    @property
    def backing_off(self) -> bool:
        """True while writes wait for the retry timer."""
        return self._circuit_open

    # -- lifecycle --------------------------------------------------------------

    async def async_open_spool(self) -> None:
        """Open the spool; a damaged one is replaced, an unusable one is retried
        later while capture goes on in memory."""
        try:
            await self._hass.async_add_executor_job(self._spool.open)
        except SpoolError as err:
            self.health.spool_failed(err)
            return
        if (moved := self._spool.moved_aside) is not None:
            LOGGER.warning(
                "The spool could not be read; it was moved aside to %s and a new "
                "one was created",
                moved,
            )
            self.health.raise_issue(issues.SPOOL_CORRUPT, path=str(moved))

    @callback
    def async_start(self, entry: ConfigEntry) -> None:
        """Start the consumer: a test write first, then batches as they come."""
        self._entry = entry
        self._consumer = entry.async_create_background_task(
            self._hass, self._async_run(), f"{DOMAIN} delivery {entry.title}"
        )

    async def async_last_write(self, deadline: float = WRITE_DEADLINE) -> None:
        """Home Assistant is stopping: one last write, bounded in time. What it
        cannot write stays queued or spooled; capture goes on until final write."""
        if self._closed:
            return
        try:
            async with asyncio.timeout(deadline):
                await self.async_flush(force=not self._paused)
        except TimeoutError:
            LOGGER.warning("%s did not answer in time; the rest is spooled", self._sink)

    async def async_final_write(self, stop_capture: Callable[[], None]) -> None:
        """Home Assistant's final write: keep every point, on disk, no network."""
        if self._closed:
            return
        # Other final-write listeners run first: what they change is captured.
        await asyncio.sleep(0)
        await self._async_stop_tasks()
        await self._async_spool_everything(SPOOL_DEADLINE)
        stop_capture()
        await self._async_spool_everything(SPOOL_DEADLINE)
        await self._async_close()

    async def async_shutdown(self) -> None:
        """Unload: stop the consumer, write what can be written in time, spool the
        rest, close the spool. Every wait is bounded."""
        if self._closed:
            return
        await self._async_stop_tasks()
        try:
            async with asyncio.timeout(WRITE_DEADLINE):
                await self.async_flush()
        except TimeoutError:
            LOGGER.warning("%s did not answer in time; the rest is spooled", self._sink)
        await self._async_spool_everything(SPOOL_DEADLINE)
        await self._async_close()

    async def _async_stop_tasks(self) -> None:
        tasks = [task for task in (self._consumer, self._overflow) if task]
        self._consumer = self._overflow = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT)

    async def _async_spool_everything(self, deadline: float) -> None:
        """Memory to the spool, waiting for moves already under way."""
        try:
            async with asyncio.timeout(deadline):
                async with self._lock:
                    await self._async_spool_memory()
                if self._moves:
                    await asyncio.wait(set(self._moves))
        except TimeoutError:
            LOGGER.warning("The spool did not take every point in time")

    async def _async_close(self) -> None:
        self._closed = True
        if self._cancel_retry is not None:
            self._cancel_retry()
            self._cancel_retry = None
        if lost := len(self._queue):
            self._queue.drop_oldest(lost)
            self._rearm()
            self.health.dropped(lost, DROP_SHUTDOWN)
        await self._hass.async_add_executor_job(self._spool.close)

    # -- capture side: the per-event path --------------------------------------

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
            self._on_backlog()

    @callback
    def _on_backlog(self) -> None:
        """A first point, a full batch, or memory is full: wake the consumer,
        move the oldest points to the spool, and drop beyond the hard bound."""
        self._rearm()
        self._wakeup.set()
        held = self.held
        if held <= self._max_memory or self._closed:
            return
        if (
            (self._overflow is None or self._overflow.done())
            and self._entry is not None
            and self.health.spool_retry_due
        ):
            self._overflow = self._entry.async_create_background_task(
                self._hass, self._async_overflow(), f"{DOMAIN} overflow"
            )
        if held > self._max_memory + self._batch_size:
            # Dropping down to the bound (not one point per event) keeps this,
            # and the repair it raises, off the per-event path.
            count = min(len(self._queue), held - self._max_memory)
            self._queue.drop_oldest(count)
            self._rearm()
            self.health.dropped(count, DROP_MEMORY_FULL)

    def _put_back(self, batch: QueuedBatch) -> None:
        self._queue.put_back(batch)
        self._rearm()

    def _rearm(self) -> None:
        """Set the queue length at which add_point next calls _on_backlog: the
        first point, a batch that may start a write (see ``_start_due``), or
        memory's bound — not every point of a backlog. Called by _on_backlog and
        whenever the queue or what is in flight changed other than by
        add_point (points put back waited longer than ``_head_since`` then
        says: a write may start early, never late)."""
        queued = len(self._owns)
        if not queued:
            self._empty = True
            self._wake_at = 1
            return
        if self._empty:
            self._empty = False
            self._head_since = self._hass.loop.time()
        wake_at = self._max_memory + 1 - self.writing - self.moving
        if (in_flight := len(self._flights)) < MAX_IN_FLIGHT:
            worth = min(self._full, WORTH_A_WRITE) if not in_flight else self._full
            if queued < worth:
                wake_at = min(wake_at, worth)
        self._wake_at = wake_at

    async def _async_overflow(self) -> None:
        """Move the oldest points beyond the memory bound to the spool."""
        while self.held > self._max_memory and self._queue:
            batch = self._queue.take(min(self._batch_size, len(self._queue)))
            if not await self._async_move(batch):
                return

    # -- the consumer -------------------------------------------------------------

    async def _async_run(self) -> None:
        """Probe the server, then flush whenever ``_flush_due`` says. Nothing but
        cancellation ends this loop."""
        loop = self._hass.loop
        await self._async_supervised(self._async_probe)
        self._last_flush = loop.time()
        while True:
            await self._async_wait(self._flush_due)
            self._kick = False
            self._last_flush = loop.time()
            if not await self._async_supervised(self._async_flush_due):
                # After an unexpected error, wait as after a failed write.
                self._not_before = loop.time() + self._next_backoff()
            self._check_health()

    def _start_due(self) -> float | None:
        """When (loop time) the next write of queued points may start; None: not
        before a point arrives or a write ends.

        The batching rule: a write starts when fewer than ``MAX_IN_FLIGHT`` are
        in flight and a full batch is queued, or nothing is in flight and either
        ``WORTH_A_WRITE`` points are queued or the last write started ``LINGER``
        ago, or the oldest point has waited ``flush_interval``. So a point at
        idle is written at once, and under load batches grow while writes are in
        flight.
        """
        queued, in_flight = len(self._owns), len(self._flights)
        if not queued or in_flight >= MAX_IN_FLIGHT:
            return None
        if queued >= self._batch_size:
            return 0.0
        deadline = self._head_since + self._flush_interval
        if in_flight:
            return deadline
        if queued >= WORTH_A_WRITE:
            return 0.0
        return min(deadline, self._last_start + self._linger)

    def _flush_due(self) -> float:
        """When the consumer flushes next: when a write may start, or after
        ``flush_interval`` anyway (replay, health); while the circuit is open,
        once per interval (the queue goes to the spool)."""
        if self._kick:
            return 0.0
        due = self._last_flush + self._flush_interval
        if (
            not (self._paused or self._circuit_open)
            and (start := self._start_due()) is not None
        ):
            due = min(due, start)
        return max(due, self._not_before)

    async def _async_wait(self, due: Callable[[], float | None]) -> None:
        """Wait until ``due`` (loop time; None: until woken) has come. Points,
        ending writes and the retry timer wake the wait to ask again."""
        loop = self._hass.loop
        while (at := due()) is None or at > loop.time():
            self._wakeup.clear()
            if at is None:
                await self._wakeup.wait()
                continue
            try:
                async with asyncio.timeout_at(at):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _check_health(self) -> None:
        spool = self._spool
        self.health.clear_quiet_issues(
            spool_has_room=spool.bytes < spool.max_bytes * 0.9,
            memory_ok=self.held <= self._max_memory,
        )
        self.health.check_outage(
            self._outage_alert,
            unsent=self.held + spool.points,
            room_mb=max(0.0, (spool.max_bytes - spool.bytes) / 1_048_576),
        )

    async def _async_supervised(self, job: Callable[[], Awaitable[object]]) -> bool:
        """Run a step of the consumer; an unexpected error is counted and logged
        once with its traceback, and the loop goes on."""
        try:
            await job()
        except Exception as err:  # the consumer must outlive any bug or library error
            self._stats.internal_errors += 1
            self._stats.last_error = f"{type(err).__name__}: {err}"
            self._stats.log_once(
                f"internal_{type(err).__name__}",
                "Unexpected error while delivering to %s; delivery goes on "
                "and further ones are counted in diagnostics",
                self._sink,
                exc_info=err,
            )
            return False
        return True

    async def _async_probe(self) -> None:
        """Test write at startup, off the setup path: capture is already on.
        It holds the lock, so a flush asked for meanwhile waits for its verdict."""
        try:
            async with self._lock:
                await self._writer.async_write(b"")
        except WriteError as err:
            if not isinstance(err, InvalidAuth):
                LOGGER.warning(
                    "%s is not available (%s); capturing into the spool until it is",
                    self._sink,
                    err,
                )
            self._on_error(err)
            return
        self._set_connected(True)
        self.health.write_ok()
        self.health.clear(issues.AUTH_FAILED, issues.TARGET_MISSING)

    async def async_flush(self, *, force: bool = False) -> bool:
        """Write what is spooled, then everything queued; True when all is written.

        While the circuit is open (backing off, or credentials refused) the memory
        queue goes to the spool instead, unless ``force`` asks for a probe now.
        """
        return await self._async_flush(force=force, everything=True)

    async def _async_flush_due(self) -> None:
        await self._async_flush(force=False, everything=False)

    async def _async_flush(self, *, force: bool, everything: bool) -> bool:
        if self._closed:
            return False
        async with self._lock:
            if not force and (self._paused or self._circuit_open):
                await self._async_spool_memory()
                return False
            try:
                await self._async_drain_spool()
                await self._async_drain_memory(everything=everything)
            except WriteError as err:
                self._on_error(err)
                await self._async_spool_memory()
                return False
            self._on_success()
            return True

    async def _async_drain_spool(self) -> None:
        """Replay the spool, oldest first, ``MAX_IN_FLIGHT`` batches at a time.

        Spooled bodies are sent as stored, and the next batches are read from
        disk while these are written (replay speed is what ends an outage). A
        spool that cannot be read leaves delivery from memory going.
        """
        if not self._spool.batches:
            return
        try:
            read = await self._async_peek(0)
            while read.batches:
                upcoming = self._async_peek(read.batches[-1].id)
                try:
                    await self._async_replay(read.batches)
                except BaseException:
                    # Let the read finish on its own (its damaged rows are
                    # counted when it does); nobody waits for it.
                    upcoming.add_done_callback(_consume)
                    raise
                read = await upcoming
        except SpoolError as err:
            self.health.spool_failed(err)

    async def async_oldest_spooled_ns(self) -> int | None:
        """The event time of the oldest spooled point (a read of the spool, in
        the executor); None when the spool is empty or cannot be read."""
        if not self._spool.batches:
            return None
        try:
            read = await self._async_peek(0, 1)
        except SpoolError:  # reported when delivery meets it
            return None
        return next((line_time_ns(b.lines[0]) for b in read.batches), None)

    def _async_peek(
        self, after: int, count: int = MAX_IN_FLIGHT
    ) -> asyncio.Future[SpoolRead]:
        future = self._hass.async_add_executor_job(self._spool.peek, count, after)
        future.add_done_callback(self._on_peeked)
        return future

    @callback
    def _on_peeked(self, future: asyncio.Future[SpoolRead]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        read = future.result()
        if read.damaged_points:
            self.health.dropped(read.damaged_points, DROP_DAMAGED)
        if read.dead_lettered:
            self._stats.rejected_points += read.dead_lettered

    async def _async_replay(self, batches: list[SpooledBatch]) -> None:
        results = await asyncio.gather(
            *(self._async_write_spooled(batch) for batch in batches),
            return_exceptions=True,
        )
        written = [b for b, r in zip(batches, results, strict=True) if r is None]
        if written:
            await self._hass.async_add_executor_job(
                self._spool.ack, [batch.id for batch in written]
            )
            self._stats.points_replayed += sum(b.points for b in written)
            self.health.spool_ok()
        _raise_first(results)

    async def _async_drain_memory(self, *, everything: bool) -> None:
        """Write the memory queue, up to ``MAX_IN_FLIGHT`` batches at a time, as
        ``_start_due`` allows (``everything``: all of it, now); return once
        nothing is in flight and no write is due.

        Batches leave the queue while they are written; any that is not confirmed
        (an error, or cancellation at shutdown) goes back to its front, in order,
        and no new write starts after an error.
        """
        flights = self._flights
        failed: list[tuple[int, QueuedBatch, BaseException]] = []

        def due() -> float | None:
            if any(task.done() for task in flights):
                return 0.0
            return None if failed else self._start_due()

        try:
            while True:
                while not failed and self._may_start(everything):
                    self._start_write()
                if not flights:
                    break
                await self._async_wait(due)
                self._settle(failed)
        finally:
            # Cancelled mid-write, nobody knows what landed: requeue it all (a
            # point written twice overwrites itself).
            for task, (order, batch) in flights.items():
                task.cancel()
                self.writing -= len(batch)
                failed.append((order, batch, asyncio.CancelledError()))
            flights.clear()
            for _, batch, _ in sorted(failed, key=lambda item: item[0], reverse=True):
                self._put_back(batch)
        if failed:
            raise min(failed, key=lambda item: item[0])[2]

    def _may_start(self, everything: bool) -> bool:
        if everything:
            return bool(self._owns) and len(self._flights) < MAX_IN_FLIGHT
        at = self._start_due()
        return at is not None and at <= self._hass.loop.time()

    def _start_write(self) -> None:
        batch = self._queue.take(min(self._batch_size, len(self._owns)))
        self.writing += len(batch)
        self._last_start = self._hass.loop.time()
        self._taken += 1
        task = self._hass.loop.create_task(
            self._async_write_body(batch.body(), len(batch), batch.lines)
        )
        task.add_done_callback(self._on_written)
        self._flights[task] = (self._taken, batch)
        self._rearm()

    @callback
    def _on_written(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here; the drain reads it from the task
        self._wakeup.set()

    def _settle(self, failed: list[tuple[int, QueuedBatch, BaseException]]) -> None:
        """Account for the writes that ended: latency, or a failure to requeue."""
        written_ns = time.time_ns()
        for task in [task for task in self._flights if task.done()]:
            order, batch = self._flights.pop(task)
            self.writing -= len(batch)
            error = asyncio.CancelledError() if task.cancelled() else task.exception()
            if error is None:
                self.latency.add(written_ns, batch.sample_times_ns())
            else:
                failed.append((order, batch, error))
        self._rearm()

    async def _async_spool_memory(self) -> None:
        """Move the memory queue to the spool, a batch at a time; stop at the
        first failure (the points stay in memory)."""
        queue = self._queue
        while queue:
            if not await self._async_move(
                self._queue.take(min(self._batch_size, len(queue)))
            ):
                return

    async def _async_move(self, batch: QueuedBatch) -> bool:
        """Store a batch taken from the queue in the spool; True when it holds it.

        The batch counts as held in memory until the spool has it; it goes back
        to the queue's front if the spool refuses it. Cancel-safe: cancelling the
        caller leaves the write to finish in its thread and settle itself.
        """
        self.moving += len(batch)
        self._rearm()
        future = self._hass.async_add_executor_job(_append, self._spool, batch)
        self._moves.add(future)
        future.add_done_callback(partial(self._on_moved, batch))
        try:
            await asyncio.shield(future)
        except Exception:  # settled (and logged) by _on_moved
            return False
        return True

    @callback
    def _on_moved(self, batch: QueuedBatch, future: asyncio.Future[int]) -> None:
        self._moves.discard(future)
        self.moving -= len(batch)
        self._rearm()
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            self._put_back(batch)
            if isinstance(error, SpoolError):
                self.health.spool_failed(error)
            elif error is not None:
                self._stats.internal_errors += 1
                self._stats.log_once(
                    "internal_spool", "Unexpected error while spooling", exc_info=error
                )
            if self.held > self._max_memory + self._batch_size:
                self._on_backlog()
            return
        self._stats.points_spooled += len(batch)
        self.health.spool_ok()
        if dropped := future.result():
            self.health.dropped(dropped, DROP_SPOOL_FULL)

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
                await self._async_dead_letter(batch, str(err))
                return
            middle = len(batch) // 2
            await self._async_write_lines(batch[:middle])
            await self._async_write_lines(batch[middle:])
            return
        self._stats.points_written += points
        self._stats.batches_written += 1
        self._stats.last_write = dt_util.utcnow()

    async def _async_dead_letter(self, lines: list[str], error: str) -> None:
        try:
            await self._hass.async_add_executor_job(
                self._spool.add_dead_letters, lines, error
            )
        except SpoolError as err:
            self.health.spool_failed(err)
            self.health.dropped(len(lines), DROP_REJECTED)
            return
        self._stats.rejected_points += len(lines)
        self._stats.log_once(
            "rejected",
            "%s refused a point; it is kept as a dead letter: %s",
            self._sink,
            error,
        )

    # -- outcomes ---------------------------------------------------------------

    def _on_success(self) -> None:
        self._backoff = 0.0
        self._paused = False
        self._set_connected(True)
        self.health.write_ok()
        if self._stats.last_error is not None:
            LOGGER.info("Writing to %s works again", self._sink)
            self._stats.last_error = None
            self.health.clear(issues.AUTH_FAILED, issues.TARGET_MISSING)

    def _on_error(self, err: WriteError) -> None:
        self._stats.write_errors += 1
        self._set_connected(False)
        self.health.write_failed()
        if self._stats.last_error is None:
            LOGGER.warning(
                "Cannot write to %s, spooling and retrying: %s", self._sink, err
            )
        self._stats.last_error = str(err)
        if isinstance(err, InvalidAuth):
            self._paused = True
            self.health.raise_issue(issues.AUTH_FAILED)
            self.health.hooks.reauth()
            return
        if isinstance(err, TargetNotFound):
            self.health.raise_issue(issues.TARGET_MISSING, error=str(err))
        retry_after = err.retry_after if isinstance(err, RetryLater) else None
        if retry_after is not None:
            delay = min(BACKOFF_MAX, retry_after)
        else:
            delay = self._next_backoff()
        self._open_circuit(delay)

    def _set_connected(self, connected: bool) -> None:
        if self.connected is not connected:
            self.connected = connected
            self.health.hooks.changed()

    def _next_backoff(self) -> float:
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_START, self._backoff * 2))
        return self._backoff * random.uniform(0.5, 1.0)

    def _open_circuit(self, delay: float) -> None:
        if self._cancel_retry is not None:
            self._cancel_retry()
        self._circuit_open = True
        self._cancel_retry = async_call_later(self._hass, delay, self._close_circuit)

    @callback
    def _close_circuit(self, _now: datetime) -> None:
        self._cancel_retry = None
        self._circuit_open = False
        self._kick = True
        self._wakeup.set()


def _append(spool: Spool, batch: QueuedBatch) -> int:
    """Executor job: lines are joined off the event loop."""
    return spool.append(batch.lines())


def _consume(future: asyncio.Future[SpoolRead]) -> None:
    if not future.cancelled():
        future.exception()


def _raise_first(results: list[BaseException | None]) -> None:
    """Re-raise the first failure of a batch of concurrent writes."""
    for result in results:
        if result is not None:
            raise result

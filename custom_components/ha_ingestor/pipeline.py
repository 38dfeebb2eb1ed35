"""Batching and delivery: lines queue in memory and are written in batches of up to
``batch_size``, at least every ``flush_interval`` seconds, by one consumer task.

A batch counts as written only once the server confirmed it. Failed batches stay
queued (oldest first) and are retried with capped exponential backoff and jitter;
the queue is bounded, and what falls off is counted and logged, never silent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import random
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.util import dt as dt_util

from .const import LOGGER
from .stats import IngestorStats
from .writer import InfluxWriter, InvalidAuth, Rejected, RetryLater, WriteError

BACKOFF_START: Final = 1.0
BACKOFF_MAX: Final = 300.0
DEFAULT_MAX_QUEUE: Final = 100_000


class Pipeline:
    """The queue between the capture callbacks and the writer."""

    def __init__(
        self,
        hass: HomeAssistant,
        writer: InfluxWriter,
        stats: IngestorStats,
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self._hass = hass
        self._writer = writer
        self._stats = stats
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._paused_for_auth = False
        self.on_auth_failed: Callable[[], object] | None = None

    @property
    def queued(self) -> int:
        """Points waiting to be written."""
        return len(self._queue)

    @callback
    def add(self, line: str) -> None:
        """Queue one line; never blocks and never raises."""
        queue = self._queue
        queue.append(line)
        self._stats.points_queued += 1
        if len(queue) > self._max_queue:
            queue.popleft()
            self._stats.dropped_points += 1
            self._stats.log_once(
                "queue_full",
                "More than %s points are waiting for InfluxDB; dropping the oldest",
                self._max_queue,
            )
        if len(queue) >= self._batch_size:
            self._wakeup.set()

    async def async_run(self) -> None:
        """Consumer task: flush on a full batch or every flush interval."""
        while True:
            try:
                async with asyncio.timeout(self._flush_interval):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            if self._paused_for_auth:
                continue
            await self.async_flush()
            if self._backoff:
                await asyncio.sleep(self._backoff * random.uniform(0.5, 1.0))

    async def async_flush(self) -> bool:
        """Write everything queued now; return True when the queue is empty."""
        async with self._lock:
            while self._queue:
                count = min(self._batch_size, len(self._queue))
                batch = [self._queue[i] for i in range(count)]
                try:
                    await self._async_write(batch)
                except WriteError as err:
                    self._on_error(err)
                    return False
                for _ in range(count):
                    self._queue.popleft()
                self._backoff = 0.0
            return True

    async def _async_write(self, batch: list[str]) -> None:
        """Write a batch; a rejected batch is split until only bad lines are left."""
        # A lone surrogate (HA keeps undecodable bytes that way) becomes "?".
        body = "\n".join(batch).encode("utf-8", "replace")
        try:
            await self._writer.async_write(body)
        except Rejected as err:
            if len(batch) == 1:
                self._stats.rejected_points += 1
                self._stats.log_once(
                    "rejected",
                    "InfluxDB rejected a point and it was set aside: %s",
                    err,
                )
                return
            middle = len(batch) // 2
            await self._async_write(batch[:middle])
            await self._async_write(batch[middle:])
            return
        self._stats.points_written += len(batch)
        self._stats.batches_written += 1
        self._stats.last_write = dt_util.utcnow()
        if self._stats.last_error is not None:
            LOGGER.info("Writing to InfluxDB works again")
            self._stats.last_error = None

    def _on_error(self, err: WriteError) -> None:
        self._stats.write_errors += 1
        if self._stats.last_error is None:
            LOGGER.warning("Cannot write to InfluxDB, will retry: %s", err)
        self._stats.last_error = str(err)
        if isinstance(err, InvalidAuth):
            self._paused_for_auth = True
            if self.on_auth_failed is not None:
                self.on_auth_failed()
            return
        retry_after = err.retry_after if isinstance(err, RetryLater) else None
        self._backoff = retry_after or min(
            BACKOFF_MAX, max(BACKOFF_START, self._backoff * 2)
        )

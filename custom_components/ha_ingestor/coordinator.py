"""The health coordinator: the pipeline's counters as one snapshot, taken every
30 s and soon after a change that matters (at most every 10 s), for the entities.

Nothing here runs per event: the pipeline only counts, and finding the oldest
spooled point (a read of the spool file) runs in the executor.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .const import DOMAIN, LOGGER
from .metrics import RateWindow
from .pipeline import Pipeline
from .republish import Republisher
from .stats import IngestorStats

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry
    from .backfill import BackfillProgress

UPDATE_INTERVAL: Final = timedelta(seconds=30)
# Entities follow a change that matters at most this often.
REFRESH_COOLDOWN: Final = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class IngestorHealth:
    """What the health entities show. Counts are since the entry's setup."""

    events_received: int
    events_rate: float | None
    points_written: int
    write_errors: int
    points_dropped: int
    last_drop_reason: str | None
    invalid_events: int
    deduplicated: int
    queue_depth: int
    spool_points: int
    spool_bytes: int
    dead_letters: int
    last_write: datetime | None
    write_latency_ms: float | None
    oldest_unsent_s: float
    connected: bool | None
    # The JSON sinks, where they are on (zero / None where they are off).
    webhook_sent: int = 0
    webhook_dropped: int = 0
    webhook_connected: bool | None = None
    republish_sent: int = 0
    republish_dropped: int = 0
    republish_connected: bool | None = None
    # The running backfill, or the last one since setup.
    backfill: BackfillProgress | None = None


class IngestorCoordinator(DataUpdateCoordinator[IngestorHealth]):
    """Snapshots one entry's pipeline for its health entities."""

    config_entry: HaIngestorConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: HaIngestorConfigEntry,
        pipeline: Pipeline,
        stats: IngestorStats,
        *,
        webhook: tuple[Pipeline, IngestorStats] | None = None,
        republisher: Republisher | None = None,
    ) -> None:
        self._webhook = webhook
        self._republisher = republisher
        self._soon: Debouncer[Coroutine[Any, Any, None]] = Debouncer(
            hass, LOGGER, cooldown=REFRESH_COOLDOWN, immediate=True
        )
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} health",
            update_interval=UPDATE_INTERVAL,
            request_refresh_debouncer=self._soon,
            always_update=False,
        )
        self._pipeline = pipeline
        self._stats = stats
        self._rate = RateWindow()
        self._events_rate: float | None = None
        self._oldest_spooled_ns: int | None = None
        self._sw_version: str | None = None
        self._backfill: BackfillProgress | None = None

    @callback
    def async_pipeline_changed(self) -> None:
        """Connected flipped or points were dropped: refresh now, or once the
        last such refresh is ``REFRESH_COOLDOWN`` old."""
        self._soon.async_schedule_call()

    @callback
    def async_backfill_changed(self, progress: BackfillProgress) -> None:
        """The backfill moved on: show it now (no I/O)."""
        self._backfill = progress
        self.async_set_updated_data(self.snapshot())

    async def _async_update_data(self) -> IngestorHealth:
        stats = self._stats
        self._events_rate = self._rate.per_minute(time.time_ns(), stats.events_received)
        self._oldest_spooled_ns = await self._pipeline.async_oldest_spooled_ns()
        self._async_update_device()
        return self.snapshot()

    def snapshot(self) -> IngestorHealth:
        """The counters now, with the spool's oldest point and the event rate as
        of the last refresh (no I/O)."""
        stats, pipeline = self._stats, self._pipeline
        spool = pipeline.spool
        now_ns = time.time_ns()
        times = [
            time_ns
            for time_ns in (self._oldest_spooled_ns, pipeline.oldest_queued_ns())
            if time_ns is not None
        ]
        return IngestorHealth(
            events_received=stats.events_received,
            events_rate=self._events_rate,
            points_written=stats.points_written,
            write_errors=stats.write_errors,
            points_dropped=stats.dropped_points,
            last_drop_reason=stats.last_drop_reason,
            invalid_events=stats.invalid,
            deduplicated=stats.deduplicated,
            queue_depth=pipeline.held,
            spool_points=spool.points,
            spool_bytes=spool.bytes,
            dead_letters=spool.dead_letter_count,
            last_write=stats.last_write,
            write_latency_ms=pipeline.latency.p95_ms(now_ns),
            oldest_unsent_s=round(max(0, now_ns - min(times)) / 1e9, 1)
            if times
            else 0.0,
            connected=pipeline.connected,
            backfill=self._backfill,
            **self._sinks(),
        )

    def _sinks(self) -> dict[str, Any]:
        sinks: dict[str, Any] = {}
        if self._webhook is not None:
            webhook, stats = self._webhook
            sinks["webhook_sent"] = stats.points_written
            sinks["webhook_dropped"] = stats.dropped_points
            sinks["webhook_connected"] = webhook.connected
        if (republisher := self._republisher) is not None:
            sinks["republish_sent"] = republisher.stats.sent
            sinks["republish_dropped"] = republisher.stats.dropped
            sinks["republish_connected"] = republisher.connected()
        return sinks

    @callback
    def _async_update_device(self) -> None:
        """Show the server's version on the device once it answered."""
        version = self._pipeline.server_version
        if version is None or version == self._sw_version:
            return
        self._sw_version = version
        # get_or_create finds the entity platforms' device on every release
        # (async_get_device is deprecated from 2026).
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.config_entry.entry_id,
            identifiers={(DOMAIN, self.config_entry.entry_id)},
            sw_version=version,
        )

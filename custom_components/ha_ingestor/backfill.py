"""Backfill: write the history Home Assistant's recorder holds into InfluxDB.

States are read with the recorder's history API, in its executor, a chunk of
time at a time (sized to about ``CHUNK_STATES`` states, never a month in
memory), and go through a ``PointBuilder`` of the entry's schema — today's
registries, the entry's filters, each state's own time — into the live
pipeline. Backpressure is a flush: at most a batch of states is handed over
before the backfill awaits ``Pipeline.async_flush``, which writes it (live
points ride along) or spools it; while InfluxDB is unreachable the backfill
waits for the coordinator to see it back, so history never crowds the spool.
After each chunk its position is stored, and a restart resumes there:
InfluxDB keeps one point per series and time, so a chunk written twice is
stored once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
import math
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import persistent_notification
from homeassistant.components.recorder import history
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import Context, HomeAssistant, State, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonValueType

from .const import DOMAIN, LOGGER
from .pipeline import Pipeline
from .points import PointBuilder
from .stats import IngestorStats

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry
    from .coordinator import IngestorCoordinator

RECORDER_DOMAIN: Final = "recorder"
STORAGE_VERSION: Final = 1
# Chunks start at an hour and halve or double towards about CHUNK_STATES.
FIRST_SPAN: Final = timedelta(hours=1)
MIN_SPAN: Final = timedelta(minutes=1)
MAX_SPAN: Final = timedelta(days=1)
CHUNK_STATES: Final = 10_000
# The history API reads after its start time, exclusive: read from a little
# earlier and keep what is at or after the chunk's start.
QUERY_MARGIN: Final = timedelta(milliseconds=1)
# Seconds between progress updates of the health entities.
PROGRESS_INTERVAL: Final = 1.0
# The recorder's history has no real context (it gives every state the same
# made-up one): states get an empty context, whose id add_state leaves out, so a
# backfill over points captured live keeps theirs (InfluxDB merges the fields of
# a point written again).
_NO_CONTEXT: Final = Context()
_NO_CONTEXT.id = ""


class BackfillStatus(StrEnum):
    """Where a backfill stands."""

    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
    # Stopped by an unload or restart: taken up again at the next setup.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True, slots=True)
class BackfillProgress:
    """A backfill as the health entities and the service response show it."""

    status: BackfillStatus
    start: datetime
    end: datetime
    position: datetime
    states: int
    points: int
    skipped: int
    entities: int

    @property
    def percent(self) -> float:
        """The share of the time range done."""
        span = (self.end - self.start).total_seconds()
        done = (self.position - self.start).total_seconds()
        return round(100 * done / span, 1) if span > 0 else 100.0

    def attributes(self) -> dict[str, str | int]:
        """The progress sensor's attributes."""
        return {
            "status": self.status.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "position": self.position.isoformat(),
            "entities": self.entities,
            "states": self.states,
            "points_written": self.points,
            "skipped": self.skipped,
        }

    def response(self) -> dict[str, JsonValueType]:
        """What the backfill action answers for an entry."""
        return {
            "points_written": self.points,
            "entities": self.entities,
            "skipped": self.skipped,
            "status": self.status.value,
        }


@dataclass(kw_only=True)
class _Job:
    """A backfill's request and how far it got: what the store keeps."""

    start: datetime
    end: datetime
    entity_ids: list[str] | None
    position: datetime
    states: int = 0
    points: int = 0
    skipped: int = 0
    entities: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            ATTR_ENTITY_ID: self.entity_ids,
            "position": self.position.isoformat(),
            "states": self.states,
            "points": self.points,
            "skipped": self.skipped,
            "entities": sorted(self.entities),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Job:
        """The stored job; KeyError, TypeError or ValueError when it is not one."""
        entity_ids = data[ATTR_ENTITY_ID]
        return cls(
            start=_aware(data["start"]),
            end=_aware(data["end"]),
            entity_ids=None if entity_ids is None else [str(e) for e in entity_ids],
            position=_aware(data["position"]),
            states=int(data["states"]),
            points=int(data["points"]),
            skipped=int(data["skipped"]),
            entities={str(entity_id) for entity_id in data["entities"]},
        )

    def progress(self, status: BackfillStatus) -> BackfillProgress:
        return BackfillProgress(
            status=status,
            start=self.start,
            end=self.end,
            position=self.position,
            states=self.states,
            points=self.points,
            skipped=self.skipped,
            entities=len(self.entities),
        )


def _aware(text: Any) -> datetime:
    if (moment := dt_util.parse_datetime(str(text))) is None or moment.tzinfo is None:
        raise ValueError(f"not an aware datetime: {text!r}")
    return moment


def recorder_loaded(hass: HomeAssistant) -> bool:
    """Whether Home Assistant's recorder is set up (the history comes from it)."""
    return RECORDER_DOMAIN in hass.config.components


class Backfill:
    """One entry's backfill: at most one runs at a time."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: HaIngestorConfigEntry,
        builder: PointBuilder,
        pipeline: Pipeline,
        coordinator: IngestorCoordinator,
        stats: IngestorStats,
        batch_size: int,
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._builder = builder
        self._pipeline = pipeline
        self._coordinator = coordinator
        self._stats = stats
        self._batch_size = max(1, min(batch_size, pipeline.max_memory_points))
        # Beside the spool: removing the entry removes it too.
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}/{entry.entry_id}/backfill"
        )
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[BackfillProgress] | None = None
        self._cancel_requested = False
        self._last_progress = -math.inf

    @property
    def running(self) -> bool:
        """Whether a backfill runs now."""
        return self._task is not None and not self._task.done()

    async def async_resume(self) -> None:
        """At setup: take up the backfill an unload or restart interrupted, or
        say it stopped when it cannot go on."""
        if (data := await self._store.async_load()) is None:
            return
        try:
            job = _Job.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            LOGGER.warning("The stored backfill could not be read (%s)", err)
            await self._store.async_remove()
            return
        if not recorder_loaded(self._hass):
            self._notify(
                "Backfill stopped",
                f"The backfill from {_local(job.start)} to {_local(job.end)} "
                f"stopped at {_local(job.position)}: Home Assistant's recorder is "
                f"not loaded. {_totals(job)} Call `ha_ingestor.backfill` with "
                "that start to go on.",
            )
            await self._store.async_remove()
            return
        LOGGER.info(
            "Resuming the backfill of %s at %s", self._entry.title, job.position
        )
        self._start(job)

    @callback
    def async_start(
        self, start: datetime, end: datetime, entity_ids: list[str] | None
    ) -> asyncio.Future[BackfillProgress]:
        """Start a backfill; the future has its totals when it ends, however."""
        return self._start(
            _Job(start=start, end=end, entity_ids=entity_ids, position=start)
        )

    def _start(self, job: _Job) -> asyncio.Future[BackfillProgress]:
        self._cancel_requested = False
        self._last_progress = -math.inf
        self._done = done = self._hass.loop.create_future()
        self._task = self._entry.async_create_background_task(
            self._hass, self._async_run(job), f"{DOMAIN} backfill {self._entry.title}"
        )
        return done

    async def async_cancel(self) -> BackfillProgress | None:
        """Cancel the running backfill and return its totals; None if none runs."""
        if self._task is None or self._done is None or not self.running:
            return None
        self._cancel_requested = True
        self._task.cancel()
        return await asyncio.shield(self._done)

    async def async_stop(self) -> None:
        """Unload: stop the backfill, keeping its stored position for the next
        setup."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _async_run(self, job: _Job) -> None:
        """Supervise one backfill: whatever ends it is told, never raised."""
        status = BackfillStatus.INTERRUPTED
        try:
            await self._store.async_save(job.as_dict())
            self._progress(job, force=True)
            await self._async_backfill(job)
        except asyncio.CancelledError:
            if self._cancel_requested:
                status = BackfillStatus.CANCELLED
                await self._async_finish(job, status)
            raise
        except Exception as err:
            LOGGER.exception(
                "The backfill of %s failed at %s", self._entry.title, job.position
            )
            self._stats.internal_errors += 1
            self._stats.last_error = f"backfill: {type(err).__name__}: {err}"
            status = BackfillStatus.FAILED
            await self._async_finish(job, status, f"{type(err).__name__}: {err}")
        else:
            status = BackfillStatus.FINISHED
            await self._async_finish(job, status)
        finally:
            progress = job.progress(status)
            self._coordinator.async_backfill_changed(progress)
            if self._done is not None and not self._done.done():
                self._done.set_result(progress)

    async def _async_backfill(self, job: _Job) -> None:
        instance = get_instance(self._hass)
        # Shielded: cancelling the backfill must not cancel the recorder's future.
        if not await asyncio.shield(instance.async_db_ready):
            raise HomeAssistantError("the recorder's database is not available")
        entity_ids = job.entity_ids or sorted(
            {*self._hass.states.async_entity_ids(), *er.async_get(self._hass).entities}
        )
        span = FIRST_SPAN
        while job.position < job.end:
            chunk_end = min(job.position + span, job.end)
            states = await instance.async_add_executor_job(
                self._read, job.position, chunk_end, entity_ids
            )
            await self._async_write(job, states)
            # Everything before chunk_end is written or spooled now.
            job.position = chunk_end
            await self._store.async_save(job.as_dict())
            self._progress(job)
            if len(states) > CHUNK_STATES:
                span = max(span / 2, MIN_SPAN)
            elif len(states) < CHUNK_STATES // 4:
                span = min(span * 2, MAX_SPAN)

    def _read(
        self, start: datetime, end: datetime, entity_ids: list[str]
    ) -> list[State]:
        """Every recorded state of the entities in [start, end), attribute-only
        changes too (runs in the recorder's executor)."""
        found = history.get_significant_states(
            self._hass,
            start - QUERY_MARGIN,
            end,
            entity_ids,
            include_start_time_state=False,
            significant_changes_only=False,
        )
        start_ts = start.timestamp()
        return [
            state
            for states in found.values()
            for state in states
            if isinstance(state, State) and state.last_updated_timestamp >= start_ts
        ]

    async def _async_write(self, job: _Job, states: list[State]) -> None:
        """Hand the states to the pipeline a batch at a time, each flushed."""
        add_point = self._pipeline.add_point
        added = 0

        def add(series_key: str, shared: str, own: str) -> None:
            nonlocal added
            add_point(series_key, shared, own)
            added += 1

        for index in range(0, len(states), self._batch_size):
            await self._async_until_writable()
            added = 0
            for state in states[index : index + self._batch_size]:
                before = added
                state.context = _NO_CONTEXT
                self._builder.add_state(state, add)
                job.states += 1
                if added > before:
                    job.entities.add(state.entity_id)
                else:
                    job.skipped += 1
            job.points += added
            if added:
                await self._pipeline.async_flush()
            self._progress(job)

    def _writable(self) -> bool:
        pipeline = self._pipeline
        return (
            pipeline.connected is not False
            and not pipeline.backing_off
            and not pipeline.paused
        )

    async def _async_until_writable(self) -> None:
        """Wait while InfluxDB is unreachable or refuses us: the coordinator
        refreshes soon after the pipeline connects again."""
        if self._writable():
            return
        writable = asyncio.Event()

        @callback
        def _check() -> None:
            if self._writable():
                writable.set()

        remove = self._coordinator.async_add_listener(_check)
        try:
            await writable.wait()
        finally:
            remove()

    def _progress(self, job: _Job, *, force: bool = False) -> None:
        """Show the progress, at most every ``PROGRESS_INTERVAL`` seconds."""
        now = self._hass.loop.time()
        if force or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._coordinator.async_backfill_changed(
                job.progress(BackfillStatus.RUNNING)
            )

    async def _async_finish(
        self, job: _Job, status: BackfillStatus, error: str | None = None
    ) -> None:
        """The backfill ended for good: forget it and say so."""
        await self._store.async_remove()
        period = f"from {_local(job.start)} to {_local(job.end)}"
        if status is BackfillStatus.FINISHED:
            self._notify(
                "Backfill finished", f"The backfill {period} is done. {_totals(job)}"
            )
            return
        what = "was cancelled" if error is None else f"failed ({error})"
        self._notify(
            "Backfill cancelled" if error is None else "Backfill failed",
            f"The backfill {period} {what} at {_local(job.position)}. "
            f"{_totals(job)} Call `ha_ingestor.backfill` with that start to go on.",
        )

    def _notify(self, title: str, message: str) -> None:
        persistent_notification.async_create(
            self._hass,
            message,
            f"{title}: {self._entry.title}",
            f"{DOMAIN}_backfill_{self._entry.entry_id}",
        )


def _local(moment: datetime) -> str:
    return dt_util.as_local(moment).isoformat(sep=" ", timespec="seconds")


def _totals(job: _Job) -> str:
    return (
        f"{job.points} points of {len(job.entities)} entities written, "
        f"{job.skipped} states skipped by the filters."
    )

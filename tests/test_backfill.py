"""Backfill from Home Assistant's real recorder (SQLite) into the real InfluxDB
1.x: each historical state once, at its own time, with today's registries;
progress shown, live capture going on, cancel, restart and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
import logging
import time
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import persistent_notification
from homeassistant.components.recorder import Recorder
from homeassistant.const import EVENT_STATE_CHANGED, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import (
    RecorderInstanceContextManager,
)

from custom_components.ha_ingestor.backfill import Backfill, BackfillStatus
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.points import nanoseconds

from .servers import InfluxDB1Server

SPAN = timedelta(hours=6)
PROGRESS_ENTITY = "sensor.home_backfill_progress"
# Each day's history: hours after its start (sensor.humidity is filtered out).
HISTORY_HOURS = (1, 7, 13)
DAYS = 3


@dataclass(frozen=True)
class Recorded:
    """A state as the recorder stored it."""

    entity_id: str
    state: str
    time: datetime

    @property
    def ns(self) -> int:
        return nanoseconds(self.time)


@pytest.fixture(autouse=True)
def mock_recorder_before_hass(
    async_test_recorder: RecorderInstanceContextManager,
) -> None:
    """The recorder's database is prepared before Home Assistant starts."""


@pytest.fixture(autouse=True)
def quiet_sqlalchemy() -> Iterator[None]:
    """The harness logs every SQL statement; these tests read thousands."""
    logger = logging.getLogger("sqlalchemy.engine")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def six_hour_chunks() -> Iterator[None]:
    """Chunks of six hours (a dozen over the history) and every progress shown."""
    with (
        patch("custom_components.ha_ingestor.backfill.FIRST_SPAN", SPAN),
        patch("custom_components.ha_ingestor.backfill.MIN_SPAN", SPAN),
        patch("custom_components.ha_ingestor.backfill.MAX_SPAN", SPAN),
        patch("custom_components.ha_ingestor.backfill.PROGRESS_INTERVAL", 0),
    ):
        yield


@pytest.fixture
def base() -> datetime:
    """Where the history starts: three days and a bit ago, on a whole hour."""
    return (dt_util.utcnow() - timedelta(days=DAYS, hours=2)).replace(
        minute=0, second=0, microsecond=0
    )


@pytest.fixture
async def history(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    base: datetime,
) -> list[Recorded]:
    """States recorded at past times across three days, for three entities;
    sensor.temperature gets an area only afterwards."""
    now = dt_util.utcnow()
    registry = er.async_get(hass)
    registry.async_get_or_create(
        "sensor", "test", "temperature", suggested_object_id="temperature"
    )
    recorded = []
    number = 0
    for day in range(DAYS):
        for hour in HISTORY_HOURS:
            moment = base + timedelta(days=day, hours=hour)
            number += 1
            for offset, entity_id, state, attributes in (
                (0, "sensor.temperature", f"{20 + number}.5", {"unit": "°C"}),
                (1, "light.kitchen", "on" if number % 2 else "off", {}),
                (2, "sensor.humidity", str(40 + number), {}),
                # An attribute-only change: recorded, so backfilled too.
                (3, "light.kitchen", "on" if number % 2 else "off", {"b": number}),
            ):
                when = moment + timedelta(minutes=offset)
                freezer.move_to(when)
                hass.states.async_set(entity_id, state, attributes)
                await async_wait_recording_done(hass)
                recorded.append(Recorded(entity_id, state, when))
    freezer.move_to(now)
    area = ar.async_get(hass).async_create("Living room")
    registry.async_update_entity("sensor.temperature", area_id=area.id)
    return recorded


def _kept(history: list[Recorded]) -> list[Recorded]:
    """What the entry's filters let through."""
    return [item for item in history if item.entity_id != "sensor.humidity"]


async def _setup(hass: HomeAssistant, server: InfluxDB1Server) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="home",
        data=server.entry_data(),
        options={"exclude_entities": ["sensor.humidity"], "batch_size": 2},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _backfill(hass: HomeAssistant, **data: Any) -> Any:
    return await hass.services.async_call(
        DOMAIN, "backfill", data, blocking=True, return_response=True
    )


def _rows(server: InfluxDB1Server, measurement: str = "/sensor|light/") -> list[dict]:  # type: ignore[type-arg]
    return server.rows("home", f"SELECT * FROM {measurement}")


async def _until(hass: HomeAssistant, condition: Callable[[], bool]) -> None:
    """Wait in real time (the executor's clock, which the freezer does not stop)."""
    for _ in range(500):
        await hass.async_block_till_done()
        if condition():
            return
        await hass.async_add_executor_job(time.sleep, 0.02)
    raise AssertionError("condition not reached")


async def _finished(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Wait until the entry's backfill ended."""
    await _until(hass, lambda: not entry.runtime_data.backfill.running)


def _notification(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    notifications = persistent_notification._async_get_or_create_notifications(hass)
    return dict(notifications[f"{DOMAIN}_backfill_{entry.entry_id}"])


def _stored(hass_storage: dict[str, Any], entry: MockConfigEntry) -> Any:
    return hass_storage.get(f"{DOMAIN}/{entry.entry_id}/backfill", {}).get("data")


class Gate:
    """Holds the backfill before a chunk until opened."""

    def __init__(self, before_chunk: int) -> None:
        self.before_chunk = before_chunk
        self.chunks = 0
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    @contextmanager
    def installed(self) -> Iterator[None]:
        write = Backfill._async_write

        async def _gated(backfill: Backfill, job: Any, states: list[State]) -> None:
            if self.chunks == self.before_chunk:
                self.reached.set()
                await self.opened.wait()
            self.chunks += 1
            await write(backfill, job, states)

        with patch.object(Backfill, "_async_write", _gated):
            yield


async def test_backfill_writes_each_state_once_with_its_time_and_todays_registry(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    base: datetime,
) -> None:
    """Every recorded state the filters keep lands once, at its own time, with
    today's area (given after it was recorded) and no stale context; running it
    again stores nothing new, and the history never crowds memory or the spool."""
    entry = await _setup(hass, influxdb_v1)
    response = await _backfill(hass, start=base)
    kept = _kept(history)
    skipped = len(history) - len(kept)
    expected = {
        "points_written": len(kept),
        "entities": 2,
        "skipped": skipped,
        "status": "finished",
    }
    assert response == {"backfilled": {"home": expected}}
    rows = _rows(influxdb_v1)
    assert sorted((row["entity_id"], row["time"], row["state"]) for row in rows) == (
        sorted((item.entity_id, item.ns, item.state) for item in kept)
    )
    temperatures = [row for row in rows if row["entity_id"] == "sensor.temperature"]
    assert {row["area"] for row in temperatures} == {"Living room"}
    assert all(row["value"] == float(row["state"]) for row in temperatures)
    assert all(row.get("context_id") is None for row in rows)
    stats = entry.runtime_data.stats
    assert stats.dropped_points == stats.points_spooled == 0

    assert await _backfill(hass, start=base) == {"backfilled": {"home": expected}}
    assert len(_rows(influxdb_v1)) == len(kept)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_backfill_of_chosen_entities_over_a_chosen_period(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    base: datetime,
) -> None:
    """``entity_id`` and ``end`` narrow it: a state at the end is left out, one
    at the start is written."""
    entry = await _setup(hass, influxdb_v1)
    start = base + timedelta(hours=7)
    end = base + timedelta(days=1, hours=7)
    response = await _backfill(
        hass,
        start=start,
        end=end,
        entity_id=["light.kitchen"],
        config_entry_id=entry.entry_id,
    )
    expected = [
        item
        for item in history
        if item.entity_id == "light.kitchen" and start <= item.time < end
    ]
    assert response["backfilled"]["home"]["points_written"] == len(expected) == 6
    rows = _rows(influxdb_v1, "light")
    assert sorted(row["time"] for row in rows) == sorted(item.ns for item in expected)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_chunks_follow_the_density_of_the_history_missing_nothing(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    base: datetime,
) -> None:
    """A chunk with more states than wanted halves the next, an empty one
    doubles it, within bounds; chunks meet exactly, so no state is read twice
    or missed."""
    entry = await _setup(hass, influxdb_v1)
    with (
        patch("custom_components.ha_ingestor.backfill.CHUNK_STATES", 4),
        patch("custom_components.ha_ingestor.backfill.FIRST_SPAN", 2 * SPAN),
        patch("custom_components.ha_ingestor.backfill.MIN_SPAN", timedelta(hours=1)),
        patch("custom_components.ha_ingestor.backfill.MAX_SPAN", timedelta(hours=12)),
        patch.object(
            Backfill, "_read", autospec=True, side_effect=Backfill._read
        ) as read,
    ):
        response = await _backfill(hass, start=base)
    chunks = [(call.args[1], call.args[2]) for call in read.call_args_list]
    spans = {end - start for start, end in chunks[:-1]}  # the last ends at "end"
    # 12 h hold two readings of 4 states (halved), 6 h one, an empty 6 h doubles.
    assert spans == {SPAN, 2 * SPAN}
    assert all(previous[1] == following[0] for previous, following in pairwise(chunks))
    assert response["backfilled"]["home"]["points_written"] == len(_kept(history))
    assert len(_rows(influxdb_v1)) == len(_kept(history))
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("platforms", [[Platform.SENSOR]])
async def test_progress_shows_on_the_health_device_and_the_end_is_notified(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    base: datetime,
) -> None:
    """The progress sensor moves from 0 to 100 % with the position, and a
    notification gives the totals at the end."""
    entry = await _setup(hass, influxdb_v1)
    assert hass.states.get(PROGRESS_ENTITY).state == "unknown"
    changes = async_capture_events(hass, EVENT_STATE_CHANGED)
    await _backfill(hass, start=base)
    states = [
        event.data["new_state"]
        for event in changes
        if event.data["entity_id"] == PROGRESS_ENTITY
    ]
    running = [state for state in states if state.attributes["status"] == "running"]
    percents = [float(state.state) for state in running]
    assert percents == sorted(percents)
    assert percents[0] == 0
    assert any(0 < percent < 100 for percent in percents)
    middle = next(state for state in running if 0 < float(state.state) < 100)
    assert base < datetime.fromisoformat(middle.attributes["position"])
    assert middle.attributes["start"] == base.isoformat()
    final = hass.states.get(PROGRESS_ENTITY)
    assert float(final.state) == 100
    kept = _kept(history)
    assert final.attributes["status"] == "finished"
    assert final.attributes["points_written"] == len(kept)
    assert final.attributes["entities"] == 2
    notification = _notification(hass, entry)
    assert notification["title"] == "Backfill finished: home"
    assert f"{len(kept)} points of 2 entities written" in notification["message"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_live_state_changes_land_while_a_backfill_runs(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
    base: datetime,
) -> None:
    """States that change while the backfill writes go through the same
    pipeline and are written too."""
    entry = await _setup(hass, influxdb_v1)
    live: list[Recorded] = []
    write = Backfill._async_write

    async def _write_with_live_changes(
        backfill: Backfill, job: Any, states: list[State]
    ) -> None:
        freezer.tick(1)
        hass.states.async_set("sensor.live", str(len(live)))
        live.append(Recorded("sensor.live", str(len(live)), dt_util.utcnow()))
        await write(backfill, job, states)

    with patch.object(Backfill, "_async_write", _write_with_live_changes):
        await _backfill(hass, start=base)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    rows = influxdb_v1.rows(
        "home", "SELECT * FROM sensor WHERE entity_id = 'sensor.live'"
    )
    assert len(live) > 5
    assert sorted((row["time"], row["state"]) for row in rows) == sorted(
        (item.ns, item.state) for item in live
    )
    assert len(_rows(influxdb_v1)) == len(_kept(history)) + len(live)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_cancel_stops_the_backfill_and_says_so(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    hass_storage: dict[str, Any],
    base: datetime,
) -> None:
    """A second backfill is refused while one runs; cancelling it stops it
    where it is, notifies with the totals and forgets it."""
    entry = await _setup(hass, influxdb_v1)
    gate = Gate(before_chunk=5)
    with gate.installed():
        await hass.services.async_call(DOMAIN, "backfill", {"start": base})
        await gate.reached.wait()
        with pytest.raises(ServiceValidationError) as err:
            await _backfill(hass, start=base)
        assert err.value.translation_key == "backfill_running"
        assert _stored(hass_storage, entry)["position"] == (base + 5 * SPAN).isoformat()
        response = await hass.services.async_call(
            DOMAIN, "cancel_backfill", blocking=True, return_response=True
        )
    assert response == {"cancelled": {"home": True}}
    progress = entry.runtime_data.coordinator.data.backfill
    assert progress is not None
    assert progress.status is BackfillStatus.CANCELLED
    assert progress.position == base + 5 * SPAN
    written = [item for item in _kept(history) if item.time < progress.position]
    assert progress.points == len(written) == len(_rows(influxdb_v1))
    notification = _notification(hass, entry)
    assert notification["title"] == "Backfill cancelled: home"
    assert "was cancelled at" in notification["message"]
    assert _stored(hass_storage, entry) is None
    response = await hass.services.async_call(
        DOMAIN, "cancel_backfill", blocking=True, return_response=True
    )
    assert response == {"cancelled": {"home": False}}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_reload_mid_run_resumes_at_the_stored_position_losing_nothing(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    hass_storage: dict[str, Any],
    base: datetime,
) -> None:
    """Unloading stops the backfill and keeps its position; the next setup
    takes it up there, and in the end each state is stored once and counted
    once."""
    entry = await _setup(hass, influxdb_v1)
    gate = Gate(before_chunk=5)
    with gate.installed():
        await hass.services.async_call(DOMAIN, "backfill", {"start": base})
        await gate.reached.wait()
        assert await hass.config_entries.async_unload(entry.entry_id)
    position = base + 5 * SPAN
    assert _stored(hass_storage, entry)["position"] == position.isoformat()

    with patch.object(
        Backfill, "_read", autospec=True, side_effect=Backfill._read
    ) as read:
        assert await hass.config_entries.async_setup(entry.entry_id)
        await _finished(hass, entry)
    assert read.call_args_list[0].args[1] == position
    kept = _kept(history)
    rows = _rows(influxdb_v1)
    assert sorted((row["entity_id"], row["time"]) for row in rows) == sorted(
        (item.entity_id, item.ns) for item in kept
    )
    progress = entry.runtime_data.coordinator.data.backfill
    assert progress is not None
    assert progress.status is BackfillStatus.FINISHED
    assert progress.points == len(kept)
    assert progress.entities == 2
    assert _notification(hass, entry)["title"] == "Backfill finished: home"
    assert _stored(hass_storage, entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_backfill_that_cannot_resume_says_where_it_stopped(
    hass: HomeAssistant,
    recorder_mock: Recorder,
    influxdb_v1: InfluxDB1Server,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the recorder at the next setup, a notification says where the
    backfill stopped; a stored backfill that cannot be read is dropped."""
    entry = MockConfigEntry(domain=DOMAIN, title="home", data=influxdb_v1.entry_data())
    key = f"{DOMAIN}/{entry.entry_id}/backfill"
    stored_job = {
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-03T00:00:00+00:00",
        "entity_id": None,
        "position": "2026-01-02T00:00:00+00:00",
        "states": 10,
        "points": 8,
        "skipped": 2,
        "entities": ["sensor.a"],
    }
    hass_storage[key] = {"version": 1, "key": key, "data": stored_job}
    entry.add_to_hass(hass)
    with patch(
        "custom_components.ha_ingestor.backfill.recorder_loaded", return_value=False
    ):
        assert await hass.config_entries.async_setup(entry.entry_id)
    notification = _notification(hass, entry)
    assert notification["title"] == "Backfill stopped: home"
    assert "8 points of 1 entities written" in notification["message"]
    assert key not in hass_storage
    assert await hass.config_entries.async_unload(entry.entry_id)

    hass_storage[key] = {
        "version": 1,
        "key": key,
        "data": {**stored_job, "start": "soon"},
    }
    with caplog.at_level(logging.WARNING):
        assert await hass.config_entries.async_setup(entry.entry_id)
    assert "The stored backfill could not be read" in caplog.text
    assert key not in hass_storage
    assert not entry.runtime_data.backfill.running
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_unexpected_error_is_logged_counted_and_notified(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
    base: datetime,
) -> None:
    """A failure ends the backfill with a traceback in the log, a count and a
    notification, never an error in Home Assistant."""
    entry = await _setup(hass, influxdb_v1)
    with patch.object(Backfill, "_read", side_effect=RuntimeError("disk gone")):
        response = await _backfill(hass, start=base)
    assert response["backfilled"]["home"]["status"] == "failed"
    assert "The backfill of home failed" in caplog.text
    assert "RuntimeError: disk gone" in caplog.text
    assert entry.runtime_data.stats.internal_errors == 1
    notification = _notification(hass, entry)
    assert notification["title"] == "Backfill failed: home"
    assert "failed (RuntimeError: disk gone)" in notification["message"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_backfill_waits_while_influxdb_is_unreachable(
    hass: HomeAssistant,
    history: list[Recorded],
    influxdb_v1: InfluxDB1Server,
    base: datetime,
) -> None:
    """While the pipeline cannot write, the backfill hands it nothing; it goes
    on once the coordinator sees InfluxDB back."""
    entry = await _setup(hass, influxdb_v1)
    data = entry.runtime_data
    await _until(hass, lambda: data.pipeline.connected is True)
    data.pipeline.connected = False
    refused: list[bool] = []
    writable = Backfill._writable

    def _writable(backfill: Backfill) -> bool:
        if not (result := writable(backfill)):
            refused.append(result)
        return result

    with patch.object(Backfill, "_writable", _writable):
        await hass.services.async_call(DOMAIN, "backfill", {"start": base})
        await _until(hass, lambda: bool(refused))
    assert data.backfill.running
    assert data.stats.points_queued == 0
    data.pipeline.connected = True
    data.coordinator.async_update_listeners()
    await _finished(hass, entry)
    assert len(_rows(influxdb_v1)) == len(_kept(history))
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("data", "translation_key"),
    [
        ({"end": timedelta(days=-2)}, "backfill_end_before_start"),
        ({"start": timedelta(hours=1)}, "backfill_end_before_start"),
        ({"config_entry_id": "nope"}, "entry_not_loaded"),
    ],
)
async def test_bad_input_is_refused_clearly(
    hass: HomeAssistant,
    recorder_mock: Recorder,
    influxdb_v1: InfluxDB1Server,
    data: dict[str, Any],
    translation_key: str,
) -> None:
    """An end before the start, a start in the future, an unknown entry."""
    entry = await _setup(hass, influxdb_v1)
    now = dt_util.utcnow()
    call = {"start": now - timedelta(days=1)} | {
        key: now + value if isinstance(value, timedelta) else value
        for key, value in data.items()
    }
    with pytest.raises(ServiceValidationError) as err:
        await _backfill(hass, **call)
    assert err.value.translation_key == translation_key
    assert not entry.runtime_data.backfill.running
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_backfill_needs_the_recorder(
    hass: HomeAssistant, recorder_mock: Recorder, influxdb_v1: InfluxDB1Server
) -> None:
    """Without the recorder loaded the action says so."""
    entry = await _setup(hass, influxdb_v1)
    with (
        patch(
            "custom_components.ha_ingestor.services.recorder_loaded",
            return_value=False,
        ),
        pytest.raises(ServiceValidationError) as err,
    ):
        await _backfill(hass, start=dt_util.utcnow() - timedelta(days=1))
    assert err.value.translation_key == "recorder_not_loaded"
    assert await hass.config_entries.async_unload(entry.entry_id)

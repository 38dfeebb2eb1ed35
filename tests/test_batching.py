"""The batching rule as a user sees it: a lone point is written at once, points
that arrive while a write is in flight go together in the next one, a burst is
written in full batches, and no point waits longer than ``flush_interval``."""

from __future__ import annotations

from collections.abc import Callable
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server

# Long enough that nothing in these tests is written because of it.
NEVER = 3600


async def _setup(
    hass: HomeAssistant, data: dict[str, Any], **options: Any
) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, data=data, options=options)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await _until(hass, lambda: entry.runtime_data.pipeline.connected is True)
    return entry


async def _until(hass: HomeAssistant, condition: Callable[[], bool]) -> None:
    """Wait in real time (the executor's clock, which the freezer does not stop)."""
    for _ in range(250):
        if condition():
            return
        await hass.async_add_executor_job(time.sleep, 0.02)
    raise AssertionError("condition not reached")


async def _settled(hass: HomeAssistant) -> None:
    """Let the consumer act on what just happened (several times its linger)."""
    await hass.async_block_till_done()
    await hass.async_add_executor_job(time.sleep, 0.3)
    await hass.async_block_till_done()


async def test_a_lone_state_change_is_written_at_once(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """With a flush interval of an hour, one state change still lands in
    InfluxDB 1.x right away: nothing waits for the interval when the writer is
    idle."""
    await _setup(hass, influxdb_v1.entry_data(), flush_interval=NEVER)
    hass.states.async_set("sensor.kitchen", "21.5")

    def stored() -> bool:
        rows = influxdb_v1.rows("home", "SELECT value FROM sensor")
        return [row["value"] for row in rows] == [21.5]

    await _until(hass, stored)


async def test_points_arriving_during_a_write_go_in_the_next_batch(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """While a write is held by a slow server, 30 state changes arrive one by
    one: none starts a write of its own; they go together once it returns."""
    entry = await _setup(
        hass, fake_influxdb.v3_entry_data(), batch_size=100, flush_interval=NEVER
    )
    fake_influxdb.delay = NEVER
    hass.states.async_set("sensor.first", "1")
    await _until(hass, lambda: fake_influxdb.batches == [1])
    for number in range(30):
        hass.states.async_set(f"sensor.next_{number}", str(number))
        await hass.async_block_till_done()
    await _settled(hass)
    assert fake_influxdb.batches == [1]
    assert entry.runtime_data.pipeline.queued == 30

    fake_influxdb.release()
    await _until(hass, lambda: fake_influxdb.batches == [1, 30])
    await _until(hass, lambda: len(fake_influxdb.points.get("home", [])) == 31)


async def test_a_burst_is_written_in_full_batches(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """250 state changes at once while a write is held: the free second slot
    takes a full batch of 100 at once, and the rest follows in full batches."""
    entry = await _setup(
        hass, fake_influxdb.v3_entry_data(), batch_size=100, flush_interval=NEVER
    )
    pipeline = entry.runtime_data.pipeline
    fake_influxdb.delay = NEVER
    hass.states.async_set("sensor.first", "1")
    await _until(hass, lambda: fake_influxdb.batches == [1])
    for number in range(250):
        hass.states.async_set(f"sensor.burst_{number}", str(number))
    await _until(hass, lambda: fake_influxdb.batches == [1, 100])
    assert pipeline.writing == 101
    assert pipeline.queued == 150

    fake_influxdb.release()
    await _until(hass, lambda: len(fake_influxdb.points.get("home", [])) == 251)
    assert fake_influxdb.batches == [1, 100, 100, 50]


async def test_no_point_waits_longer_than_the_flush_interval(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, freezer: FrozenDateTimeFactory
) -> None:
    """A write is held by a slow server; a point queued behind it starts the
    second write when it has waited ``flush_interval`` (2 s), not before."""
    await _setup(hass, fake_influxdb.v3_entry_data(), flush_interval=2)
    fake_influxdb.delay = NEVER
    hass.states.async_set("sensor.first", "1")
    await _until(hass, lambda: fake_influxdb.batches == [1])
    hass.states.async_set("sensor.second", "2")
    await hass.async_block_till_done()

    freezer.tick(1.9)
    async_fire_time_changed(hass)
    await _settled(hass)
    assert fake_influxdb.batches == [1]

    freezer.tick(0.2)
    async_fire_time_changed(hass)
    await _until(hass, lambda: fake_influxdb.batches == [1, 1])
    fake_influxdb.release()
    await _until(hass, lambda: len(fake_influxdb.points.get("home", [])) == 2)

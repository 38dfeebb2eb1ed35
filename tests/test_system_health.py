"""System health: each entry's server, write outcome, backlog and last write."""

from __future__ import annotations

from datetime import datetime

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    get_system_health_info,
)

from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server, free_port

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _setup(
    hass: HomeAssistant, title: str, data: dict[str, str]
) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, title=title, unique_id=title, data=data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def test_one_entry_shows_its_server_writes_and_backlog(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A working entry: its URL (no credentials, though an old entry kept them in
    it), writes succeed, nothing waits, and when the last write was."""
    assert await async_setup_component(hass, "system_health", {})
    url = fake_influxdb.url.replace("://", "://user:secret@")
    entry = await _setup(hass, "home", fake_influxdb.v3_entry_data() | {"url": url})
    hass.states.async_set("sensor.t", "20")
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    info = await get_system_health_info(hass, DOMAIN)
    assert info == {
        "server": fake_influxdb.url,
        "writes_succeed": True,
        "queued_points": 0,
        "spooled_points": 0,
        "last_write": entry.runtime_data.stats.last_write,
    }
    assert isinstance(info["last_write"], datetime)
    assert "secret" not in str(info)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_several_entries_are_listed_by_title(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """With two entries each value names them; an unreachable server shows that
    writes fail and what waits in the spool, and has no last write."""
    assert await async_setup_component(hass, "system_health", {})
    good = await _setup(hass, "good", fake_influxdb.v3_entry_data())
    down_url = f"http://127.0.0.1:{free_port()}"
    down = await _setup(hass, "down", fake_influxdb.v3_entry_data() | {"url": down_url})
    hass.states.async_set("sensor.t", "20")
    await hass.async_block_till_done()
    assert await good.runtime_data.pipeline.async_flush()
    assert not await down.runtime_data.pipeline.async_flush()
    spooled = down.runtime_data.pipeline.spool.points
    assert spooled > 0

    info = await get_system_health_info(hass, DOMAIN)
    last_write = good.runtime_data.stats.last_write
    assert last_write is not None
    assert info == {
        "server": f"good: {fake_influxdb.url}; down: {down_url}",
        "writes_succeed": "good: yes; down: no",
        "queued_points": "good: 0; down: 0",
        "spooled_points": f"good: 0; down: {spooled}",
        "last_write": f"good: {last_write.isoformat()}",
    }
    for entry in (good, down):
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_nothing_tried_yet_leaves_the_write_outcome_out(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """Before the first write (the startup test write still running) system health
    does not claim an outcome."""
    assert await async_setup_component(hass, "system_health", {})
    fake_influxdb.delay = 30
    entry = await _setup(hass, "home", fake_influxdb.v3_entry_data())
    info = await get_system_health_info(hass, DOMAIN)
    assert "writes_succeed" not in info
    assert "last_write" not in info
    fake_influxdb.release()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_server_version_shows_once_the_server_answered(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The version the real InfluxDB 1.x sends with its answers is shown."""
    assert await async_setup_component(hass, "system_health", {})
    entry = await _setup(hass, "home", influxdb_v1.entry_data())
    assert await entry.runtime_data.pipeline.async_flush()  # after the probe
    info = await get_system_health_info(hass, DOMAIN)
    assert info["server_version"].startswith("1.6")
    assert await hass.config_entries.async_unload(entry.entry_id)

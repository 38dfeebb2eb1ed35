"""Setting up and unloading a config entry against the real servers."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server, free_port


def _v1_entry(server: InfluxDB1Server, **overrides: str) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="home",
        unique_id=f"{server.url}|home",
        data=server.entry_data() | overrides,
    )


async def test_entry_loads_and_unloads(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """With the real server up, the entry loads and unloads cleanly."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_refused_credentials_load_capture_and_deliver_after_reauth(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A password the server refuses at setup: the entry loads, reauth starts,
    state changes meanwhile are kept, and they land once the user reauthenticates
    (with one reload, not the update-listener pattern HA 2026.12 drops)."""
    entry = _v1_entry(influxdb_v1, password="wrong-secret")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    for number in range(30):
        hass.states.async_set("sensor.meanwhile", str(number))
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    assert entry.runtime_data.pipeline.paused
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]

    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {"password": influxdb_v1.admin_password}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await entry.runtime_data.pipeline.async_flush()
    rows = influxdb_v1.rows("home", "SELECT count(value) FROM sensor")
    assert rows[0]["count"] == 30
    assert "update listener" not in caplog.text


async def test_unreachable_server_still_sets_up_and_spools(
    hass: HomeAssistant, socket_enabled: None, influxdb_v1_server: InfluxDB1Server
) -> None:
    """Nothing listening at start-up: the entry loads and captures into the spool."""
    entry = _v1_entry(influxdb_v1_server, url=f"http://127.0.0.1:{free_port()}")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    hass.states.async_set("sensor.early", "1")
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    assert entry.runtime_data.pipeline.spool.points == 1


async def test_options_change_reloads_the_entry(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """Saving options reloads the entry, which then runs with the new options."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{fake_influxdb.url}|home",
        data=fake_influxdb.v3_entry_data(),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.runtime_data.options.batch_size == 1000

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "capture": {"event_types": ["state_changed"]},
            "schema": {"measurement": "domain"},
            "filters": {},
            "delivery": {"batch_size": 10, "flush_interval": 1.0},
            "durability": {},
            "context": {},
            "republish": {},
            "webhook": {},
            "privacy": {},
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.options.batch_size == 10

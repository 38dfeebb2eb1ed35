"""With Home Assistant's Prometheus integration, the health sensors are scraped
from /api/prometheus like any other sensor."""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import prometheus_client
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.coordinator import UPDATE_INTERVAL

from .servers import InfluxDB1Server


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    """A Prometheus registry of this test's own (the default one is global)."""
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    with (
        patch.object(prometheus_client, "REGISTRY", registry),
        patch(
            "custom_components.ha_ingestor.PLATFORMS",
            [Platform.BINARY_SENSOR, Platform.SENSOR],
        ),
    ):
        yield


async def test_health_sensors_are_scraped_from_api_prometheus(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Counters, gauges and Connected appear with their values and units."""
    assert await async_setup_component(hass, "prometheus", {"prometheus": {}})
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="home",
        data=influxdb_v1.entry_data(),
        options={"event_types": ["ha_ingestor_test"]},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    for _ in range(3):
        hass.bus.async_fire("ha_ingestor_test")
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    freezer.tick(UPDATE_INTERVAL)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()

    client = await hass_client()
    response = await client.get("/api/prometheus")
    assert response.status == 200
    values = {
        (line.split("{")[0], line.split('entity="')[1].split('"')[0]): line.split()[-1]
        for line in (await response.text()).splitlines()
        if 'entity="' in line and not line.startswith("#")
    }
    assert (
        values[("homeassistant_sensor_unit_events", "sensor.home_events_received")]
        == "3.0"
    )
    assert (
        values[("homeassistant_sensor_unit_points", "sensor.home_points_written")]
        == "3.0"
    )
    assert (
        values[("homeassistant_sensor_unit_points", "sensor.home_points_in_the_spool")]
        == "0.0"
    )
    assert (
        values[("homeassistant_sensor_duration_s", "sensor.home_oldest_unsent_point")]
        == "0.0"
    )
    assert (
        "homeassistant_sensor_timestamp_seconds",
        "sensor.home_last_write",
    ) in values
    assert (
        values[("homeassistant_binary_sensor_state", "binary_sensor.home_connected")]
        == "1.0"
    )
    assert await hass.config_entries.async_unload(entry.entry_id)

"""The ``ha_topology`` measurement in the real InfluxDB 1.x: one point per
recorded entity at setup, and new ones once a device moved."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.topology import COOLDOWN

from .registries import via
from .servers import InfluxDB1Server


@pytest.fixture
def topology() -> bool:
    """These tests are about the topology: write it."""
    return True


async def test_topology_is_written_at_setup_and_again_after_a_device_moves(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server, freezer: FrozenDateTimeFactory
) -> None:
    """Each recorded entity has a point with its device, parent, area, floor,
    integration and the automations that reference it; an excluded entity has
    none; moving the device writes points with its new area."""
    demo = MockConfigEntry(domain="demo")
    demo.add_to_hass(hass)
    areas = ar.async_get(hass)
    kitchen = areas.async_create("Kitchen")
    living = areas.async_create("Living room")
    devices = dr.async_get(hass)
    hub = devices.async_get_or_create(
        config_entry_id=demo.entry_id, identifiers={("demo", "hub")}, name="Hub"
    )
    lamp = devices.async_get_or_create(
        config_entry_id=demo.entry_id,
        identifiers={("demo", "lamp")},
        name="Lamp",
        **via(hub),
    )
    devices.async_update_device(lamp.id, area_id=kitchen.id)
    er.async_get(hass).async_get_or_create(
        "light", "demo", "lamp", device_id=lamp.id, suggested_object_id="lamp"
    )
    hass.states.async_set("sensor.secret", "1")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "id": "lamp_on",
                "alias": "Lamp on",
                "triggers": {"trigger": "state", "entity_id": "sensor.motion"},
                "actions": {
                    "action": "light.turn_on",
                    "target": {"entity_id": "light.lamp"},
                },
            }
        },
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        data=influxdb_v1.entry_data(),
        options={"exclude_entities": ["sensor.secret"]},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    rows = influxdb_v1.rows("home", "SELECT * FROM ha_topology")
    lamp_rows = [row for row in rows if row["entity_id"] == "light.lamp"]
    assert [
        (row["device"], row["parent_device"], row["area"], row["integration"])
        for row in lamp_rows
    ] == [("Lamp", "Hub", "Kitchen", "demo")]
    assert lamp_rows[0]["automations"] == "automation.lamp_on"
    assert "sensor.secret" not in {row["entity_id"] for row in rows}

    freezer.tick(timedelta(seconds=1))
    devices.async_update_device(lamp.id, area_id=living.id)
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=COOLDOWN))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    areas_over_time = [
        row["area"]
        for row in influxdb_v1.rows(
            "home",
            "SELECT * FROM ha_topology WHERE entity_id = 'light.lamp' ORDER BY time",
        )
    ]
    assert areas_over_time == ["Kitchen", "Living room"]

"""Context fields on every state change and what privacy keeps out of InfluxDB,
checked in the real InfluxDB 1.x."""

from __future__ import annotations

from typing import Any

from homeassistant.core import Context, HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN

from .servers import InfluxDB1Server


async def _setup(
    hass: HomeAssistant, server: InfluxDB1Server, options: dict[str, Any]
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="context",
        data=server.entry_data(),
        options={"event_types": ["state_changed", "call_service"]} | options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _flush(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()


async def test_state_changes_carry_the_context_entities_at_capture_time(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Each point carries the outdoor temperature, the weather and the sun's
    elevation as they were when it was captured: a later change of a context
    entity shows in later points only."""
    hass.states.async_set("sensor.outdoor_temperature", "4.5")
    hass.states.async_set(
        "weather.home", "rainy", {"temperature": 5.0, "humidity": 91, "cloud": "x"}
    )
    hass.states.async_set("sun.sun", "above_horizon", {"elevation": 12.25})
    entry = await _setup(
        hass,
        influxdb_v1,
        {
            "context_entities": [
                "sensor.outdoor_temperature",
                "weather.home",
                "sun.sun",
                "sensor.not_there_yet",
            ],
            "context_attributes": ["temperature", "humidity", "elevation", "cloud"],
            "include_entities": ["switch.heating"],
        },
    )
    hass.states.async_set("switch.heating", "on")
    await hass.async_block_till_done()
    hass.states.async_set("sensor.outdoor_temperature", "unavailable")
    hass.states.async_set("weather.home", "sunny", {"temperature": 9.5})
    hass.states.async_set("switch.heating", "off")
    await _flush(hass, entry)

    rows = influxdb_v1.rows("home", 'SELECT * FROM "switch" ORDER BY time')
    context = [
        {key: value for key, value in row.items() if key.startswith("ctx_")}
        for row in rows
    ]
    assert context == [
        {
            "ctx_sensor_outdoor_temperature": 4.5,
            "ctx_sensor_outdoor_temperature_str": None,
            "ctx_weather_home_str": "rainy",
            "ctx_weather_home_temperature": 5.0,
            "ctx_weather_home_humidity": 91.0,
            "ctx_sun_sun_str": "above_horizon",
            "ctx_sun_sun_elevation": 12.25,
        },
        {
            "ctx_sensor_outdoor_temperature": None,
            "ctx_sensor_outdoor_temperature_str": "unavailable",
            "ctx_weather_home_str": "sunny",
            "ctx_weather_home_temperature": 9.5,
            "ctx_weather_home_humidity": None,
            "ctx_sun_sun_str": "above_horizon",
            "ctx_sun_sun_elevation": 12.25,
        },
    ]


async def test_a_context_entity_own_change_carries_its_new_value(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The context entity's own point already shows its new value."""
    hass.states.async_set("sensor.outdoor_temperature", "4.5")
    entry = await _setup(
        hass,
        influxdb_v1,
        {"context_entities": ["sensor.outdoor_temperature"]},
    )
    hass.states.async_set("sensor.outdoor_temperature", "6.0")
    await _flush(hass, entry)
    rows = influxdb_v1.rows(
        "home", 'SELECT value, ctx_sensor_outdoor_temperature FROM "sensor"'
    )
    assert [(row["value"], row["ctx_sensor_outdoor_temperature"]) for row in rows] == [
        (6.0, 6.0)
    ]


async def test_locations_never_reach_influxdb_unless_kept(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """By default no coordinate is stored: not as attributes, not in service data;
    attributes_never_export hides any attribute even when included. With
    drop_location off the coordinates are stored as before."""
    entry = await _setup(
        hass,
        influxdb_v1,
        {"attributes_never_export": ["battery"]},
    )
    located = {
        "latitude": 52.37,
        "longitude": 4.89,
        "gps_accuracy": 12,
        "altitude": 3.5,
        "battery": 80,
        "speed": 1.5,
    }
    hass.states.async_set("device_tracker.phone", "home", located)
    hass.states.async_set("person.alice", "home", located)
    hass.bus.async_fire(
        "call_service",
        {
            "domain": "device_tracker",
            "service": "see",
            "service_data": {"dev_id": "phone", "gps": [52.37, 4.89], "lat": 52.37},
        },
    )
    await _flush(hass, entry)
    stored = str(influxdb_v1.query("home", "SELECT * FROM /.*/"))
    assert "52.37" not in stored
    assert "4.89" not in stored
    assert "latitude" not in stored
    assert "battery" not in stored
    assert "speed" in stored
    await hass.config_entries.async_unload(entry.entry_id)

    hass.config_entries.async_update_entry(
        entry,
        options=entry.options
        | {
            "drop_location": False,
        },
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    hass.states.async_set("device_tracker.phone", "away", located)
    await _flush(hass, entry)
    rows = influxdb_v1.rows(
        "home", "SELECT latitude, longitude FROM device_tracker WHERE state = 'away'"
    )
    assert [(row["latitude"], row["longitude"]) for row in rows] == [(52.37, 4.89)]


async def test_pseudonymized_users_are_stable_and_never_named(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """With pseudonymize_users a user's points carry the same pseudonym before and
    after a reload, and the clear name is stored nowhere."""
    user = await hass.auth.async_create_user("Alice Example")
    entry = await _setup(hass, influxdb_v1, {"pseudonymize_users": True})
    hass.states.async_set("light.desk", "on", context=Context(user_id=user.id))
    await _flush(hass, entry)
    assert await hass.config_entries.async_reload(entry.entry_id)
    hass.states.async_set("light.desk", "off", context=Context(user_id=user.id))
    await _flush(hass, entry)

    stored = str(influxdb_v1.query("home", "SELECT * FROM /.*/"))
    assert "Alice" not in stored
    users = {row["user"] for row in influxdb_v1.rows("home", "SELECT * FROM light")}
    assert len(users) == 1
    (pseudonym,) = users
    assert pseudonym.startswith("user_")
    assert len(pseudonym) == len("user_") + 16
    assert "pseudonym_key" in entry.data
    assert entry.data["pseudonym_key"] not in stored

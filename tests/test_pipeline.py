"""End to end: events fired in Home Assistant land in the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
    label_registry as lr,
)
from homeassistant.setup import async_setup_component
from hypothesis import given, strategies as st
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, MockUser

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.points import nanoseconds, timestamp_nanoseconds

from .fake_influxdb import FakeInfluxDB
from .registries import via
from .servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer


async def _setup(
    hass: HomeAssistant, data: dict[str, Any], options: dict[str, Any] | None = None
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="test", data=data, options=options or {}
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await entry.runtime_data.pipeline.async_flush()  # after the startup probe
    return entry


async def _flush(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()


async def _eventually(
    check: Callable[[], Awaitable[bool]], attempts: int = 100
) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _device_of(hass: HomeAssistant, entity_id: str) -> dr.DeviceEntry:
    entity = er.async_get(hass).async_get(entity_id)
    assert entity is not None
    assert entity.device_id is not None
    device = dr.async_get(hass).async_get(entity.device_id)
    assert isinstance(device, dr.DeviceEntry)
    return device


def _home_registries(hass: HomeAssistant, count: int) -> list[str]:
    """Entities with devices in areas on floors, labels and a via_device hub."""
    source = MockConfigEntry(domain="demo")
    source.add_to_hass(hass)
    devices = dr.async_get(hass)
    entities = er.async_get(hass)
    floors = fr.async_get(hass)
    areas = ar.async_get(hass)
    labels = lr.async_get(hass)
    ground = floors.async_create("Ground floor")
    upstairs = floors.async_create("First floor")
    living = areas.async_create("Living room", floor_id=ground.floor_id)
    bedroom = areas.async_create("Bedroom", floor_id=upstairs.floor_id)
    energy = labels.async_create("Energy")
    critical = labels.async_create("Critical")
    hub = devices.async_get_or_create(
        config_entry_id=source.entry_id,
        identifiers={("demo", "hub")},
        name="Zigbee hub",
        manufacturer="Acme",
        model="Hub 1",
    )
    entity_ids = []
    for index in range(count):
        device = devices.async_get_or_create(
            config_entry_id=source.entry_id,
            identifiers={("demo", f"sensor-{index}")},
            name=f"Sensor {index}",
            manufacturer="Acme",
            model="Thermo 2",
            **via(hub),
        )
        devices.async_update_device(
            device.id,
            area_id=(living if index % 2 else bedroom).id,
            labels={energy.label_id} if index % 3 else set(),
        )
        entry = entities.async_get_or_create(
            "sensor",
            "demo",
            f"temperature-{index}",
            device_id=device.id,
            original_device_class="temperature",
            unit_of_measurement="°C",
            suggested_object_id=f"temperature_{index}",
        )
        if index == 0:
            entities.async_update_entity(entry.entity_id, labels={critical.label_id})
        entity_ids.append(entry.entity_id)
    return entity_ids


async def test_state_changes_land_enriched_in_influxdb_1x(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """1,000 state changes over 50 enriched entities all land, with every tag."""
    entity_ids = _home_registries(hass, 50)
    entry = await _setup(hass, influxdb_v1.entry_data())
    for round_ in range(20):
        for index, entity_id in enumerate(entity_ids):
            hass.states.async_set(
                entity_id,
                str(20 + index / 10 + round_ / 100),
                {
                    "unit_of_measurement": "°C",
                    "device_class": "temperature",
                    "friendly_name": f"Temperature {index}",
                    "battery": 90 - round_,
                    "status": "ok",
                },
            )
    await _flush(hass, entry)

    counts = {
        row["entity_id"]: row["count"]
        for row in influxdb_v1.rows(
            "home", "SELECT count(value) FROM sensor GROUP BY entity_id"
        )
    }
    assert counts == dict.fromkeys(entity_ids, 20)
    assert entry.runtime_data.stats.points_written == 1000

    row = influxdb_v1.rows(
        "home", "SELECT * FROM sensor WHERE entity_id = 'sensor.temperature_1' LIMIT 1"
    )[0]
    device = _device_of(hass, "sensor.temperature_1")
    assert device.via_device_id is not None
    hub = dr.async_get(hass).async_get(device.via_device_id)
    assert hub is not None
    row = {key: value for key, value in row.items() if value is not None}
    assert isinstance(row.pop("time"), int)
    assert len(row.pop("context_id")) == 26  # a ULID
    assert 0 <= row.pop("hour") < 24
    assert 0 <= row.pop("weekday") < 7
    assert row == {
        "entity_id": "sensor.temperature_1",
        "domain": "sensor",
        "device_class": "temperature",
        "unit": "°C",
        "area": "Living room",
        "floor": "Ground floor",
        "device": "Sensor 1",
        "device_id": device.id,
        "manufacturer": "Acme",
        "model": "Thermo 2",
        "integration": "demo",
        "parent_device": "Zigbee hub",
        "parent_device_id": hub.id,
        "labels": "Energy",
        "value": 20.1,
        "state": "20.1",
        "friendly_name": "Temperature 1",
        "battery": 90.0,
    }
    labelled = influxdb_v1.rows(
        "home",
        "SELECT count(value) FROM sensor WHERE labels = 'Critical' GROUP BY entity_id",
    )
    assert [(r["entity_id"], r["count"]) for r in labelled] == [
        ("sensor.temperature_0", 20)
    ]


async def test_point_timestamp_is_last_updated_in_nanoseconds(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The point's time is the state's last_updated, to the nanosecond, also
    when HA's float timestamp lies exactly between two microseconds."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    # 7,812.5 µs past the second, exactly representable: last_updated rounds
    # it half to even.
    hass.states.async_set(
        "light.kitchen", "on", {"brightness": 128}, timestamp=1_700_000_000.0078125
    )
    await _flush(hass, entry)
    state = hass.states.get("light.kitchen")
    assert state is not None
    assert state.last_updated.microsecond == 7812
    [row] = influxdb_v1.rows("home", "SELECT * FROM light")
    assert row["time"] == 1_700_000_000_007_812_000
    assert row["state"] == "on"
    assert row["brightness"] == 128.0
    assert "value" not in row or row["value"] is None


@given(
    timestamp=st.floats(min_value=-(2**34), max_value=2**37),
    # Until 2242 a float timestamp resolves a microsecond (HA's own limit).
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2242, 1, 1),
        timezones=st.just(UTC),
    ),
)
def test_point_time_is_last_updated_for_any_timestamp(
    timestamp: float, moment: datetime
) -> None:
    """Points take their time from HA's float timestamp; it must give exactly the
    microsecond of ``last_updated``, whether HA derived that datetime from the
    float or the float from the datetime."""
    assert timestamp_nanoseconds(timestamp) == nanoseconds(
        datetime.fromtimestamp(timestamp, UTC)
    )
    assert timestamp_nanoseconds(moment.timestamp()) == nanoseconds(moment)


async def test_unavailable_is_recorded_as_state_without_value(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """An outage is data: unknown/unavailable are stored as state only."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    hass.states.async_set("sensor.power", "12.5")
    hass.states.async_set("sensor.power", "unavailable")
    hass.states.async_set("sensor.power", "unknown")
    await _flush(hass, entry)
    rows = influxdb_v1.rows("home", "SELECT state, value FROM sensor")
    assert [(r["state"], r["value"]) for r in rows] == [
        ("12.5", 12.5),
        ("unavailable", None),
        ("unknown", None),
    ]


async def test_registry_changes_show_in_the_next_points(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Moving an entity's device to another area and renaming it retags new points."""
    [entity_id] = _home_registries(hass, 1)
    entry = await _setup(hass, influxdb_v1.entry_data())
    hass.states.async_set(entity_id, "1")
    devices = dr.async_get(hass)
    device = _device_of(hass, entity_id)
    kitchen = ar.async_get(hass).async_create("Kitchen")
    devices.async_update_device(device.id, area_id=kitchen.id, name_by_user="Fridge")
    await hass.async_block_till_done()
    hass.states.async_set(entity_id, "2")
    await _flush(hass, entry)
    rows = influxdb_v1.rows("home", "SELECT value, area, floor, device FROM sensor")
    assert [(r["value"], r["area"], r["floor"], r["device"]) for r in rows] == [
        (1.0, "Bedroom", "First floor", "Sensor 0"),
        (2.0, "Kitchen", None, "Fridge"),
    ]


@pytest.mark.parametrize(
    ("device", "area", "parent"),
    [
        ("Hub \\ one", "Living \\, room", "Bridge \\= 2"),
        ("Hub \\\\ one", "Den \\\\\\ b", "end \\"),
    ],
)
async def test_backslashes_in_registry_names_are_stored_as_named(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    device: str,
    area: str,
    parent: str,
) -> None:
    """Devices, areas and parents named with backslashes before a space, comma or
    equals sign land in InfluxDB 1.x exactly as the registries hold them (a
    trailing backslash, which no server can store at the end of a tag, is the
    one thing dropped), and the neighbouring points are intact."""
    [first, second] = _home_registries(hass, 2)
    devices = dr.async_get(hass)
    sensor = _device_of(hass, first)
    hub = devices.async_get(sensor.via_device_id or "")
    assert hub is not None
    devices.async_update_device(hub.id, name_by_user=parent)
    devices.async_update_device(
        sensor.id,
        name_by_user=device,
        area_id=ar.async_get(hass).async_create(area).id,
    )
    await hass.async_block_till_done()
    entry = await _setup(hass, influxdb_v1.entry_data())
    hass.states.async_set(second, "1", {"note": 'a=b,c d "q" \\'})
    hass.states.async_set(first, "2")
    hass.states.async_set(second, "3")
    await _flush(hass, entry)
    rows = influxdb_v1.rows(
        "home", "SELECT value, device, area, parent_device FROM sensor"
    )
    hub_name = parent.rstrip("\\")
    assert [(r["value"], r["device"], r["area"], r["parent_device"]) for r in rows] == [
        (1.0, "Sensor 1", "Living room", hub_name),
        (2.0, device, area, hub_name),
        (3.0, "Sensor 1", "Living room", hub_name),
    ]


async def test_automation_and_service_events_carry_user_and_context(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server, hass_admin_user: MockUser
) -> None:
    """Automation triggers and service calls land as ha_event points with the user
    and context chain; a state change they cause names the automation."""
    entry = await _setup(
        hass,
        influxdb_v1.entry_data(),
        {"event_types": ["state_changed", "automation_triggered", "call_service"]},
    )
    user_context = Context(user_id=hass_admin_user.id)
    hass.bus.async_fire(
        "call_service",
        {
            "domain": "light",
            "service": "turn_on",
            "service_data": {"entity_id": ["light.a", "light.b"]},
        },
        context=user_context,
    )
    run_context = Context(parent_id=user_context.id)
    hass.bus.async_fire(
        "automation_triggered",
        {"name": "Evening", "entity_id": "automation.evening", "source": "time"},
        context=run_context,
    )
    await hass.async_block_till_done()
    hass.states.async_set("light.a", "on", context=run_context)
    await _flush(hass, entry)

    events = {
        row["event_type"]: row
        for row in influxdb_v1.rows("home", 'SELECT * FROM "ha_event"')
    }
    service = events["call_service"]
    assert (service["domain"], service["service"], service["entity_id"]) == (
        "light",
        "turn_on",
        "light.a,light.b",
    )
    assert service["user"] == hass_admin_user.name
    assert service["context_id"] == user_context.id
    assert '"service_data":{"entity_id":["light.a","light.b"]}' in service["data"]
    triggered = events["automation_triggered"]
    assert triggered["entity_id"] == "automation.evening"
    assert triggered["parent_context_id"] == user_context.id
    [light] = influxdb_v1.rows("home", "SELECT * FROM light")
    assert light["automation"] == "automation.evening"
    assert light["context_id"] == run_context.id


async def test_mqtt_messages_from_mosquitto_land_as_mqtt_points(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
) -> None:
    """Messages published to the real broker reach InfluxDB through HA's MQTT."""
    from paho.mqtt import publish

    mqtt_entry = MockConfigEntry(
        domain="mqtt",
        data={"broker": "127.0.0.1", "port": mosquitto_server.port},
    )
    mqtt_entry.add_to_hass(hass)
    entry = await _setup(
        hass,
        influxdb_v1.entry_data(),
        {"event_types": [], "mqtt_topics": ["zigbee2mqtt/#"]},
    )
    # MQTT set up after HA Ingestor: the subscription follows. MQTT reads
    # configuration.yaml, which the test harness does not have.
    with patch("homeassistant.config.load_yaml_config_file", return_value={}):
        assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
        await hass.async_block_till_done()

    messages = [
        ("zigbee2mqtt/plug", b'{"power": 12.5, "state": "ON", "energy": {"today": 1}}'),
        ("zigbee2mqtt/temp", b"21.5"),
        ("zigbee2mqtt/raw", b"\xff\xfe not utf-8"),
        ("other/topic", b"ignored"),
    ]

    def _publish() -> None:
        for topic, payload in messages:
            publish.single(
                topic, payload, hostname="127.0.0.1", port=mosquitto_server.port
            )

    async def _all_arrived() -> bool:
        await hass.async_add_executor_job(_publish)
        await hass.async_block_till_done()
        return entry.runtime_data.pipeline.queued >= 3

    await _eventually(_all_arrived)
    await _flush(hass, entry)
    rows = {row["topic"]: row for row in influxdb_v1.rows("home", "SELECT * FROM mqtt")}
    assert set(rows) == {"zigbee2mqtt/plug", "zigbee2mqtt/temp", "zigbee2mqtt/raw"}
    assert rows["zigbee2mqtt/plug"]["power"] == 12.5
    assert rows["zigbee2mqtt/plug"]["energy.today"] == 1.0
    assert rows["zigbee2mqtt/plug"]["payload"].startswith('{"power": 12.5')
    assert rows["zigbee2mqtt/temp"]["value"] == 21.5
    assert rows["zigbee2mqtt/raw"]["payload"] == "\ufffd\ufffd not utf-8"
    await hass.config_entries.async_unload(mqtt_entry.entry_id)


async def test_v2_path_lands_in_victoria_metrics(
    hass: HomeAssistant,
    victoria_metrics_server: VictoriaMetricsServer,
    socket_enabled: None,
) -> None:
    """The InfluxDB v2 write path delivers to a real v2 write endpoint."""
    entry = await _setup(
        hass,
        {
            "api_version": "2",
            "url": victoria_metrics_server.url,
            "token": "token",
            "organization": "org",
            "bucket": "home",
            "verify_ssl": True,
        },
    )
    for value in range(5):
        hass.states.async_set("sensor.vm_power", str(value * 1.5), {"voltage": 230})
    await _flush(hass, entry)
    series = victoria_metrics_server.export(
        '{__name__="sensor_value",entity_id="sensor.vm_power"}'
    )
    # VictoriaMetrics keeps milliseconds: compare the values, not their order.
    assert [sorted(s["values"]) for s in series] == [[0, 1.5, 3, 4.5, 6]]
    assert series[0]["metric"]["domain"] == "sensor"


async def test_v3_path_lands_in_the_native_api(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """InfluxDB 3's /api/v3/write_lp receives every point."""
    entry = await _setup(
        hass,
        fake_influxdb.v3_entry_data(),
    )
    hass.states.async_set("switch.pump", "on")
    hass.states.async_set("switch.pump", "off")
    await _flush(hass, entry)
    points = fake_influxdb.points["home"]
    assert [
        (p.measurement, p.tags["entity_id"], p.fields["state"]) for p in points
    ] == [
        ("switch", "switch.pump", "on"),
        ("switch", "switch.pump", "off"),
    ]


async def test_compress_option_gzips_large_writes(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server, fake_influxdb: FakeInfluxDB
) -> None:
    """With ``compress``, large bodies travel gzipped and land on both the real
    InfluxDB 1.x and the v2 API; without it, nothing is compressed."""
    keep_note = {"attributes_include": ["note"]}
    v1 = await _setup(hass, influxdb_v1.entry_data(), {**keep_note, "compress": True})
    v2 = MockConfigEntry(
        domain=DOMAIN,
        unique_id="v2",
        data=fake_influxdb.v2_entry_data(),
        options=keep_note,
    )
    v2.add_to_hass(hass)
    assert await hass.config_entries.async_setup(v2.entry_id)
    await hass.async_block_till_done()

    async def fire(first: int) -> None:
        for value in range(first, first + 500):
            hass.states.async_set("sensor.big", str(value), {"note": "x" * 200})
        await _flush(hass, v1)
        await _flush(hass, v2)

    await fire(0)
    assert fake_influxdb.gzipped == 0
    assert len(fake_influxdb.points["home"]) == 500

    hass.config_entries.async_update_entry(v2, options={**keep_note, "compress": True})
    assert await hass.config_entries.async_reload(v2.entry_id)
    await fire(500)
    assert fake_influxdb.gzipped >= 1
    assert len(fake_influxdb.points["home"]) == 1000
    assert (
        influxdb_v1.rows("home", "SELECT count(value) FROM sensor")[0]["count"] == 1000
    )


HOSTILE = [
    "comma,space =equals",
    'quote"back\\slash',
    "trailing backslash\\",
    "new\nline\rcarriage\ttab",
    "emoji 🌡️ non-ASCII ÄÖÜ 中文",
    "#hash start",
    "",
    "nul\x00char",
    "x" * 5000,
]


async def test_hostile_names_and_values_land_without_a_rejected_line(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Every escaping case lands: nothing is rejected, nothing raises."""
    area = ar.async_get(hass)
    labels = lr.async_get(hass)
    source = MockConfigEntry(domain="demo")
    source.add_to_hass(hass)
    entities = er.async_get(hass)
    created = []
    for index, text in enumerate(HOSTILE):
        if text:
            area_entry = area.async_create(f"{text[:50]} {index}")
            label = labels.async_create(f"{text[:50]} {index}")
        entity = entities.async_get_or_create(
            "sensor", "demo", f"hostile-{index}", suggested_object_id=f"hostile_{index}"
        )
        if text:
            entities.async_update_entity(
                entity.entity_id, area_id=area_entry.id, labels={label.label_id}
            )
        created.append(entity.entity_id)
    entry = await _setup(
        hass,
        influxdb_v1.entry_data(),
        {
            "attributes_include": ["note", "nested", "big", "nan"],
            "event_types": ["state_changed", "my_event"],
        },
    )
    for entity_id, text in zip(created, HOSTILE, strict=True):
        hass.states.async_set(
            entity_id,
            text[:255],
            {
                "friendly_name": text,
                "unit_of_measurement": text[:20],
                "note": text,
                "nested": {"a": [1, {"b": text}]},
                "big": 2**80,
                "nan": float("nan"),
                "inf": float("inf"),
            },
        )
        hass.bus.async_fire("my_event", {"text": text, "bytes": text.encode()})
    await _flush(hass, entry)
    stats = entry.runtime_data.stats
    assert stats.rejected_points == 0
    assert stats.invalid == 0
    assert stats.points_written == 2 * len(HOSTILE)
    rows = influxdb_v1.rows("home", "SELECT count(state) FROM /.*/ GROUP BY entity_id")
    assert sum(r["count"] for r in rows) == len(HOSTILE)


async def test_bad_event_is_counted_logged_once_and_skipped(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An event the pipeline cannot encode never reaches HA's bus as an error: it
    is counted, logged once, and the good events around it land."""
    entry = await _setup(
        hass, influxdb_v1.entry_data(), {"event_types": ["state_changed", "weird"]}
    )
    circular: dict[str, Any] = {}
    circular["self"] = circular
    hass.states.async_set("sensor.before", "1")
    hass.bus.async_fire("weird", {"loop": circular})
    hass.bus.async_fire("weird", {"loop": circular})
    hass.states.async_set("sensor.after", "2")
    await _flush(hass, entry)
    assert entry.runtime_data.stats.invalid == 2
    assert caplog.text.count("Skipped a weird event") == 1
    rows = influxdb_v1.rows("home", "SELECT value FROM sensor")
    assert [row["value"] for row in rows] == [1.0, 2.0]


async def test_unload_and_stop_write_what_is_queued(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Points still queued are written when the entry unloads and when Home
    Assistant stops, without waiting for the flush interval."""
    entry = await _setup(hass, influxdb_v1.entry_data(), {"flush_interval": 3600})
    hass.states.async_set("sensor.queued", "1")
    await hass.async_block_till_done()
    hass.bus.async_fire("homeassistant_stop")
    await hass.async_block_till_done()
    hass.states.async_set("sensor.queued", "2")
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)
    rows = influxdb_v1.rows("home", "SELECT value FROM sensor")
    assert [row["value"] for row in rows] == [1.0, 2.0]


async def test_filters_and_measurement_options_shape_what_lands(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Include/exclude rules (exclude wins), the measurement strategy and a
    per-entity override all apply; reloading with other options changes them."""
    entry = await _setup(
        hass,
        influxdb_v1.entry_data(),
        {
            "include_domains": ["sensor"],
            "exclude_entity_globs": ["sensor.*_noise"],
            "measurement": "unit_of_measurement",
            "measurement_overrides": ["sensor.outdoor=weather"],
        },
    )
    hass.states.async_set("sensor.power", "5", {"unit_of_measurement": "W"})
    hass.states.async_set("sensor.outdoor", "12", {"unit_of_measurement": "°C"})
    hass.states.async_set("sensor.wifi_noise", "3", {"unit_of_measurement": "dB"})
    hass.states.async_set("light.ignored", "on")
    await _flush(hass, entry)
    measurements = [
        row[0] for row in influxdb_v1.query("home", "SHOW MEASUREMENTS")[0]["values"]
    ]
    assert measurements == ["W", "weather"]
    assert entry.runtime_data.stats.filtered == 2

    hass.config_entries.async_update_entry(entry, options={"dedup_window": 60})
    assert await hass.config_entries.async_reload(entry.entry_id)
    hass.states.async_set("light.ignored", "off")
    hass.states.async_set("light.ignored", "off", force_update=True)
    await _flush(hass, entry)
    assert [
        r["state"] for r in influxdb_v1.rows("home", "SELECT state FROM light")
    ] == ["off"]
    assert entry.runtime_data.stats.deduplicated == 1


async def test_retry_after_is_honoured_without_hammering(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A 429 with Retry-After opens the circuit: no request until then, data goes
    to the spool, and a forced flush (the service) delivers it."""
    entry = await _setup(
        hass,
        fake_influxdb.v3_entry_data(),
    )
    fake_influxdb.fail_next(429, retry_after=120)
    hass.states.async_set("sensor.busy", "1")
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    requests = fake_influxdb.requests
    hass.states.async_set("sensor.busy", "2")
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    assert fake_influxdb.requests == requests
    assert entry.runtime_data.pipeline.spool.points == 2
    response = await hass.services.async_call(
        DOMAIN,
        "flush",
        {"config_entry_id": entry.entry_id},
        blocking=True,
        return_response=True,
    )
    assert response == {"written": {entry.title: True}}
    assert [p.fields["value"] for p in fake_influxdb.points["home"]] == [1.0, 2.0]


async def test_services_refuse_an_unknown_entry(hass: HomeAssistant) -> None:
    """A service call naming no loaded entry says so."""
    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "flush", {"config_entry_id": "nope"}, blocking=True
        )


@pytest.mark.parametrize(
    ("strategy", "extra", "measurement"),
    [
        ("domain__device_class", {}, "sensor__temperature"),
        ("entity_id", {}, "sensor.t"),
        ("fixed", {"measurement_name": "ha"}, "ha"),
        ("unit_of_measurement", {}, "°C"),
    ],
)
async def test_measurement_strategies(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    strategy: str,
    extra: dict[str, str],
    measurement: str,
) -> None:
    """Each measurement strategy names the measurement as documented."""
    entry = await _setup(
        hass, influxdb_v1.entry_data(), {"measurement": strategy, **extra}
    )
    hass.states.async_set(
        "sensor.t", "20", {"device_class": "temperature", "unit_of_measurement": "°C"}
    )
    await _flush(hass, entry)
    assert influxdb_v1.query("home", "SHOW MEASUREMENTS")[0]["values"] == [
        [measurement]
    ]


async def test_odd_values_and_payloads_are_stored_sensibly(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Removed entities write nothing; infinite and huge numbers are no value;
    event data HA cannot serialise is stored as text; JSON lists and booleans in
    MQTT payloads give numeric leaves only."""
    entry = await _setup(
        hass,
        influxdb_v1.entry_data(),
        {"event_types": ["state_changed", "odd"], "mqtt_max_payload": 16},
    )
    hass.states.async_set("sensor.gone", "inf", {"huge": 10**400, "flag": True})
    hass.states.async_remove("sensor.gone")
    hass.bus.async_fire("odd", {"thing": complex(1, 2)})
    builder = entry.runtime_data.capture._builder
    line, _ = builder.mqtt_line("t/list", b'[1, true, {"a": 2.5}, "x"]', 1.0)
    assert line is not None
    entry.runtime_data.pipeline.add(line)
    await _flush(hass, entry)
    [state] = influxdb_v1.rows("home", "SELECT * FROM sensor")
    assert state["state"] == "inf"
    assert state.get("value") is None
    assert state.get("huge") is None
    [event] = influxdb_v1.rows("home", 'SELECT * FROM "ha_event"')
    assert event["data"] == '{"thing": "(1+2j)"}'
    [mqtt] = influxdb_v1.rows("home", "SELECT * FROM mqtt")
    assert (mqtt["0"], mqtt["2.a"], mqtt["payload"]) == (1.0, 2.5, '[1, true, {"a": ')
    assert entry.runtime_data.stats.mqtt_payloads_truncated == 1

"""The WebSocket API: a live stream of enriched events with filters, the recent
events, each entry's counters and the home's relationships; admins only."""

from __future__ import annotations

import asyncio
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.ha_ingestor.const import DOMAIN

from .raw_websocket import RawWebSocket
from .registries import via
from .servers import InfluxDB1Server

ENTRY_ID = "01JHAINGESTORWEBSOCKET0000"


async def _setup(
    hass: HomeAssistant, server: InfluxDB1Server, **options: Any
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="home",
        unique_id="websocket",
        data=server.entry_data(),
        options={"event_types": ["state_changed", "call_service"]} | options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _kitchen(hass: HomeAssistant) -> str:
    """A device in the kitchen, on the ground floor, behind a hub; returns the
    area's id."""
    config_entry = MockConfigEntry(domain="demo", entry_id="01JDEMO0000000000000000000")
    config_entry.add_to_hass(hass)
    floor = fr.async_get(hass).async_create("Ground floor", level=0)
    kitchen = ar.async_get(hass).async_create("Kitchen", floor_id=floor.floor_id)
    devices = dr.async_get(hass)
    hub = devices.async_get_or_create(
        config_entry_id=config_entry.entry_id,
        identifiers={("demo", "hub")},
        name="Hub",
        manufacturer="Acme",
        model="H1",
    )
    lamp = devices.async_get_or_create(
        config_entry_id=config_entry.entry_id,
        identifiers={("demo", "lamp")},
        name="Lamp",
        manufacturer="Acme",
        model="L1",
        **via(hub),
    )
    devices.async_update_device(lamp.id, area_id=kitchen.id)
    assert hub.id != lamp.id
    er.async_get(hass).async_get_or_create(
        "light", "demo", "lamp", device_id=lamp.id, suggested_object_id="lamp"
    )
    return kitchen.id


async def test_subscribers_receive_exactly_the_events_their_filters_match(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """Three subscribers, by event type, by entity pattern and by area (id or
    name), each get exactly their events, enriched, live; unsubscribing stops
    the stream and capture goes back to building no JSON."""
    kitchen_id = _kitchen(hass)
    entry = await _setup(hass, influxdb_v1)
    client = await hass_ws_client(hass)
    filters = {
        1: {"event_types": ["call_service"]},
        2: {"entity_globs": ["sensor.*_temperature"]},
        3: {"areas": [kitchen_id]},
        4: {"areas": ["Kitchen"], "event_types": ["state_changed"]},
    }
    for msg_id, subscription in filters.items():
        await client.send_json(
            {"id": msg_id, "type": "ha_ingestor/subscribe"} | subscription
        )
        assert (await client.receive_json())["success"]
    assert entry.runtime_data.sinks.active

    hass.states.async_set("sensor.outdoor_temperature", "4.5", {"unit": "°C"})
    hass.states.async_set("sensor.humidity", "80")
    hass.states.async_set("light.lamp", "on")
    hass.bus.async_fire("call_service", {"domain": "light", "service": "turn_on"})
    await hass.async_block_till_done()

    received: dict[int, list[tuple[str, str | None]]] = {n: [] for n in filters}
    for _ in range(4):
        message = await client.receive_json()
        for event in message["event"]["events"]:
            received[message["id"]].append(
                (event["event_type"], event.get("entity_id"))
            )
    assert received == {
        1: [("call_service", None)],
        2: [("state_changed", "sensor.outdoor_temperature")],
        3: [("state_changed", "light.lamp")],
        4: [("state_changed", "light.lamp")],
    }

    for msg_id in filters:
        await client.send_json(
            {"id": 10 + msg_id, "type": "unsubscribe_events", "subscription": msg_id}
        )
        assert (await client.receive_json())["success"]
    assert not entry.runtime_data.sinks.active


async def test_non_admins_are_refused(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    hass_read_only_access_token: str,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """A user who is not an administrator can use none of the commands."""
    await _setup(hass, influxdb_v1)
    client = await hass_ws_client(hass, access_token=hass_read_only_access_token)
    for msg_id, command in enumerate(
        ("subscribe", "recent", "stats", "relationships"), start=1
    ):
        await client.send_json({"id": msg_id, "type": f"ha_ingestor/{command}"})
        response = await client.receive_json()
        assert not response["success"]
        assert response["error"]["code"] == "unauthorized"


async def test_a_subscriber_that_never_reads_loses_its_own_events_only(
    hass: HomeAssistant,
    aiohttp_client: ClientSessionGenerator,
    hass_access_token: str,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """While a subscriber reads nothing (its socket full), every state change
    still lands in InfluxDB and Home Assistant keeps its connection; what it
    could not take is counted and told in the messages it gets once it reads."""
    entry = await _setup(hass, influxdb_v1, batch_size=5000)
    assert await async_setup_component(hass, "websocket_api", {})
    server = await aiohttp_client(hass.http.app)
    client = await RawWebSocket.connect(server.port, "/api/websocket")
    assert (await client.receive_json())["type"] == "auth_required"
    await client.send_json({"type": "auth", "access_token": hass_access_token})
    assert (await client.receive_json())["type"] == "auth_ok"
    await client.send_json({"id": 1, "type": "ha_ingestor/subscribe"})
    assert (await client.receive_json())["success"]

    padding = "x" * 4000
    total = 6000
    for start in range(0, total, 200):
        for number in range(start, start + 200):
            hass.states.async_set(f"sensor.flood_{number}", str(number), {"p": padding})
        await asyncio.sleep(0)  # the stream flushes, the socket fills
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    [[_, stored]] = influxdb_v1.query("home", "SELECT count(value) FROM sensor")[0][
        "values"
    ]
    assert stored == total
    stream = entry.runtime_data.sinks.stream
    assert stream.dropped > 0

    events = dropped = 0
    while events + dropped < total:
        message = await client.receive_json()
        events += len(message["event"]["events"])
        dropped += message["event"].get("dropped", 0)
    assert (events + dropped, dropped) == (total, stream.dropped)
    await client.close()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_recent_stats_and_relationships_answer_as_documented(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
    snapshot: SnapshotAssertion,
) -> None:
    """recent gives the last recorded events, oldest first and enriched, up to
    its limit; stats each entry's counters; relationships the graph with the
    automation's references."""
    # The integration's view is registered before the client starts HTTP, and
    # the client's token is checked before the clock moves back.
    assert await async_setup_component(hass, DOMAIN, {})
    client = await hass_ws_client(hass)
    freezer.move_to("2026-12-06 08:00:00+00:00")
    _kitchen(hass)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "id": "lamp_on_motion",
                "alias": "Lamp on motion",
                "triggers": {"trigger": "state", "entity_id": "binary_sensor.motion"},
                "actions": {
                    "action": "light.turn_on",
                    "target": {"entity_id": "light.lamp"},
                },
            }
        },
    )
    entry = await _setup(hass, influxdb_v1, exclude_entities=["sensor.hidden"])
    for number in range(3):
        freezer.tick(1)
        hass.states.async_set("light.lamp", "on" if number % 2 else "off")
    hass.states.async_set("sensor.hidden", "1")
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    await client.send_json({"id": 1, "type": "ha_ingestor/recent", "limit": 2})
    recent = await client.receive_json()
    await client.send_json({"id": 2, "type": "ha_ingestor/recent", "limit": 1001})
    too_many = await client.receive_json()
    await client.send_json({"id": 3, "type": "ha_ingestor/stats"})
    stats = await client.receive_json()
    await client.send_json({"id": 4, "type": "ha_ingestor/relationships"})
    graph = await client.receive_json()

    assert [event["state"] for event in recent["result"]["events"]] == ["on", "off"]
    # The entry's own service device comes and goes with its refreshes.
    graph["result"]["devices"] = [
        device
        for device in graph["result"]["devices"]
        if device["manufacturer"] == "Acme"
    ]
    assert not too_many["success"]
    assert {
        "recent": recent["result"],
        "stats": stats["result"],
        "relationships": graph["result"],
    } == snapshot(
        exclude=props("context_id", "device_id", "via_device_id", "last_write")
    )

"""The demo: a real Home Assistant process recording a small home into InfluxDB.

It starts, on 127.0.0.1 only, the same real servers the tests use (InfluxDB 1.x and
Mosquitto) and a real ``hass`` process with this repository's integration
(tests/hass_process.py), then does what a user does in the UI, through Home
Assistant's own HTTP and WebSocket APIs: onboards, confirms the HTTP configuration,
adds the MQTT integration and HA Ingestor with their config flows, sets HA
Ingestor's options, names its device, adds the dashboard in dashboards/lovelace/,
puts areas on floors and labels on entities. Zigbee2MQTT-style devices (behind a
bridge) announce themselves by MQTT discovery and report every second; an
automation switches a light on motion. After ``--seconds`` it waits until what it
published has landed, reads back from InfluxDB what did, with the registry
enrichment, prints HA Ingestor's health sensors, then stops everything it started,
by pid. ``--keep-running`` leaves it up until Ctrl-C.

Exit status 1 when nothing was recorded or ``hass`` exited by itself, so the demo
checks itself.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Coroutine
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
import json
from pathlib import Path
import random
import signal
import sys
import time
from typing import Any

import aiohttp
from homeassistant.util import slugify
from paho.mqtt import publish
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hass_process import (
    DISABLED,
    OWNER,
    HomeAssistantClient,
    HomeAssistantProcess,
)
from tests.servers import InfluxDB1Server, MosquittoServer

DATABASE = "home"
DISCOVERY = "homeassistant"
DASHBOARD = ROOT / "dashboards" / "lovelace" / "ha_ingestor.yaml"
DASHBOARD_PATH = "ha-ingestor"
# The name the dashboard's entity ids are made of.
DEVICE_NAME = "HA Ingestor"
# Off by default; the dashboard shows it.
ENABLED_ENTITIES = ("events_rate",)
LANDING_TIMEOUT = 30
BRIDGE_STATE = "zigbee2mqtt/bridge/state"

CONFIGURATION = """\
recorder:
history:
input_boolean:
  hallway_light:
    name: Hallway light
automation:
  - id: hallway_light_follows_motion
    alias: Hallway light follows motion
    triggers:
      - trigger: mqtt
        topic: zigbee2mqtt/hallway_motion
    actions:
      - action: >-
          input_boolean.turn_{{ 'on' if trigger.payload_json.occupancy else 'off' }}
        target:
          entity_id: input_boolean.hallway_light
"""

# (device id, name, model, suggested area, {sensor key: (device class, unit)})
DEVICES: list[tuple[str, str, str, str, dict[str, tuple[str, str]]]] = [
    (
        "living_room_climate",
        "Living room climate",
        "TH-2",
        "Living Room",
        {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%")},
    ),
    (
        "bedroom_climate",
        "Bedroom climate",
        "TH-2",
        "Bedroom",
        {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%")},
    ),
    (
        "kitchen_plug",
        "Kitchen plug",
        "SP-1",
        "Kitchen",
        {"power": ("power", "W"), "energy": ("energy", "kWh")},
    ),
]
FLOORS = {
    "Ground floor": ["Living Room", "Kitchen", "Hallway"],
    "First floor": ["Bedroom"],
}


class HassExited(Exception):
    """``hass`` stopped by itself."""


def discovery_messages() -> list[tuple[str, str]]:
    """MQTT discovery configs: a bridge, devices behind it, a motion sensor."""
    bridge = {
        "identifiers": ["demo_bridge"],
        "name": "Zigbee bridge",
        "manufacturer": "Acme",
        "model": "Bridge 3",
    }
    messages = [
        (
            f"{DISCOVERY}/sensor/demo_bridge/state/config",
            {
                "name": "Connection state",
                "unique_id": "demo_bridge_state",
                "state_topic": BRIDGE_STATE,
                "device": bridge,
            },
        )
    ]
    for device_id, name, model, area, sensors in DEVICES:
        device = {
            "identifiers": [device_id],
            "name": name,
            "manufacturer": "Acme",
            "model": model,
            "suggested_area": area,
            "via_device": "demo_bridge",
        }
        for key, (device_class, unit) in sensors.items():
            messages.append(
                (
                    f"{DISCOVERY}/sensor/{device_id}/{key}/config",
                    {
                        "name": key.capitalize(),
                        "unique_id": f"{device_id}_{key}",
                        "state_topic": f"zigbee2mqtt/{device_id}",
                        "value_template": f"{{{{ value_json.{key} }}}}",
                        "device_class": device_class,
                        "unit_of_measurement": unit,
                        "state_class": "total_increasing"
                        if key == "energy"
                        else "measurement",
                        "device": device,
                    },
                )
            )
    messages.append(
        (
            f"{DISCOVERY}/binary_sensor/hallway_motion/occupancy/config",
            {
                "name": "Occupancy",
                "unique_id": "hallway_motion_occupancy",
                "state_topic": "zigbee2mqtt/hallway_motion",
                "value_template": "{{ 'ON' if value_json.occupancy else 'OFF' }}",
                "device_class": "occupancy",
                "device": {
                    "identifiers": ["hallway_motion"],
                    "name": "Hallway motion",
                    "manufacturer": "Acme",
                    "model": "PIR-1",
                    "suggested_area": "Hallway",
                    "via_device": "demo_bridge",
                },
            },
        )
    )
    return [(topic, json.dumps(payload)) for topic, payload in messages]


class Readings:
    """Plausible, slowly wandering sensor values."""

    def __init__(self) -> None:
        self.values = {
            "living_room_climate": {"temperature": 21.0, "humidity": 45.0},
            "bedroom_climate": {"temperature": 18.5, "humidity": 55.0},
            "kitchen_plug": {"power": 3.0, "energy": 12.0},
        }
        self.tick = 0

    def next(self) -> list[tuple[str, str]]:
        self.tick += 1
        messages = []
        for device_id, values in self.values.items():
            for key in values:
                if key == "energy":
                    values[key] += values["power"] / 3_600_000
                elif key == "power":
                    values[key] = random.choice([3.0, 3.1, 1850.0, 2100.0])
                else:
                    values[key] += random.uniform(-0.2, 0.2)
            payload = {key: round(value, 2) for key, value in values.items()}
            messages.append((f"zigbee2mqtt/{device_id}", json.dumps(payload)))
        if self.tick % 3 == 0:
            occupancy = self.tick % 6 == 0
            messages.append(
                ("zigbee2mqtt/hallway_motion", json.dumps({"occupancy": occupancy}))
            )
        return messages


@dataclass(kw_only=True)
class Home:
    """The running demo: its servers, Home Assistant and HA Ingestor's entry."""

    influxdb: InfluxDB1Server
    mosquitto: MosquittoServer
    hass: HomeAssistantProcess
    api: HomeAssistantClient
    entry_id: str = ""
    readings: Readings = field(default_factory=Readings)
    published: int = 0

    async def publish(self, messages: list[tuple[str, str]], *, retain: bool) -> None:
        await asyncio.to_thread(
            publish.multiple,
            [(topic, payload, 0, retain) for topic, payload in messages],
            hostname="127.0.0.1",
            port=self.mosquitto.port,
        )

    async def report_readings(self, seconds: float | None = None) -> None:
        """Every device reports once a second, for ``seconds`` or until cancelled."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            messages = self.readings.next()
            await self.publish(messages, retain=False)
            self.published += len(messages)
            await asyncio.sleep(1)


async def supervised[T](hass: HomeAssistantProcess, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` while ``hass`` runs; :class:`HassExited` if it stops first."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if (code := hass.exit_code) is not None:
                task.cancel()
                raise HassExited(
                    f"Home Assistant exited by itself (status {code}); its "
                    f"configuration and log are kept in {hass.tmp}. The end of its "
                    f"log:\n{hass.log_tail()}"
                )
            await asyncio.wait({task}, timeout=0.5)
        return task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_home() -> AsyncIterator[Home]:
    """Start everything and set the home up; stop everything afterwards."""
    influxdb = InfluxDB1Server().start()
    mosquitto = MosquittoServer().start()
    hass = HomeAssistantProcess(CONFIGURATION)
    try:
        influxdb.create_database(DATABASE)
        print(
            f"InfluxDB 1.x on {influxdb.url}, Mosquitto on 127.0.0.1:{mosquitto.port}"
        )
        print(f"Starting Home Assistant ({hass.tmp}) on {hass.url} …")
        hass.start()
        async with aiohttp.ClientSession() as session:
            home = Home(
                influxdb=influxdb,
                mosquitto=mosquitto,
                hass=hass,
                api=HomeAssistantClient(session, hass),
            )
            try:
                await supervised(hass, set_up(home))
                yield home
            finally:
                await home.api.close()
    finally:
        print("Stopping Home Assistant, Mosquitto and InfluxDB …")
        if hass.exit_code is None:
            hass.cleanup()
        mosquitto.cleanup()
        influxdb.cleanup()


async def add_integrations(
    api: HomeAssistantClient, influxdb: InfluxDB1Server, mosquitto: MosquittoServer
) -> str:
    """Onboard, then add MQTT and HA Ingestor (writing to InfluxDB's ``home``
    database) with their config flows; HA Ingestor's entry id."""
    await api.onboard()
    await api.config_flow(
        "mqtt",
        {
            "broker": "127.0.0.1",
            "port": mosquitto.port,
            # The form's collapsed section, as the UI sends it.
            "other_settings": {"set_client_cert": False, "set_ca_cert": "off"},
        },
    )
    return await api.config_flow(
        "ha_ingestor",
        {"next_step_id": "v1"},
        {
            "url": influxdb.url,
            "database": DATABASE,
            "username": influxdb.admin_user,
            "password": influxdb.admin_password,
            "verify_ssl": True,
        },
    )


async def set_up(home: Home) -> None:
    api = home.api
    home.entry_id = await add_integrations(api, home.influxdb, home.mosquitto)
    await api.options_flow(
        home.entry_id,
        {
            "event_types": ["state_changed", "automation_triggered"],
            "mqtt_topics": ["zigbee2mqtt/#"],
            "batch_size": 1000,
            "flush_interval": 1,
            "measurement": "domain",
        },
    )
    await name_device(api, home.entry_id)
    # The automation's MQTT trigger could not attach before MQTT was set up;
    # turning it off and on attaches it (a reload skips it: its configuration did
    # not change).
    for action in ("turn_off", "turn_on"):
        await api.rest(
            "POST",
            f"/api/services/automation/{action}",
            {"entity_id": "automation.hallway_light_follows_motion"},
        )
    print("Onboarded, MQTT and HA Ingestor added through their config flows.")
    await home.publish([*discovery_messages(), (BRIDGE_STATE, "online")], retain=True)
    await organise_home(api)
    await api.ws(
        "lovelace/dashboards/create",
        url_path=DASHBOARD_PATH,
        title=DEVICE_NAME,
        icon="mdi:database-arrow-right",
        show_in_sidebar=True,
        require_admin=False,
    )
    await api.ws(
        "lovelace/config/save",
        url_path=DASHBOARD_PATH,
        config=yaml.safe_load(DASHBOARD.read_text()),
    )
    await subscribed(home)


async def name_device(api: HomeAssistantClient, entry_id: str) -> None:
    """Name HA Ingestor's device and its entities after it, as the UI offers when
    a device is renamed: the dashboard's entity ids are made of that name. Enable
    what the dashboard shows that is off by default."""
    devices = [
        device
        for device in await api.ws("config/device_registry/list")
        if entry_id in device["config_entries"]
    ]
    entities = [
        entity
        for entity in await api.ws("config/entity_registry/list")
        if entity["config_entry_id"] == entry_id
    ]
    if not devices:
        return
    device = devices[0]
    old, new = slugify(device["name"]), slugify(DEVICE_NAME)
    await api.ws(
        "config/device_registry/update",
        device_id=device["id"],
        name_by_user=DEVICE_NAME,
    )
    enabled = False
    for entity in entities:
        domain, object_id = entity["entity_id"].split(".", 1)
        changes: dict[str, Any] = {}
        if object_id.startswith(f"{old}_"):
            suffix = object_id.removeprefix(f"{old}_")
            changes["new_entity_id"] = f"{domain}.{new}_{suffix}"
        if entity["disabled_by"] and entity["unique_id"].endswith(ENABLED_ENTITIES):
            changes["disabled_by"] = None
            enabled = True
        if changes:
            await api.ws(
                "config/entity_registry/update",
                entity_id=entity["entity_id"],
                **changes,
            )
    if enabled:
        await api.rest("POST", f"/api/config/config_entries/entry/{entry_id}/reload")


async def organise_home(api: HomeAssistantClient) -> None:
    """Floors for the areas MQTT discovery suggested, a label on the climate
    sensors: the registry data HA Ingestor adds to every point."""
    deadline = time.monotonic() + 30
    while True:
        areas = {
            area["name"]: area for area in await api.ws("config/area_registry/list")
        }
        if all(name in areas for rooms in FLOORS.values() for name in rooms):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"areas from MQTT discovery missing: {sorted(areas)}")
        await asyncio.sleep(0.5)
    for level, (floor, rooms) in enumerate(FLOORS.items()):
        created = await api.ws("config/floor_registry/create", name=floor, level=level)
        for room in rooms:
            await api.ws(
                "config/area_registry/update",
                area_id=areas[room]["area_id"],
                floor_id=created["floor_id"],
            )
    label = await api.ws("config/label_registry/create", name="Climate")
    for entity in await api.ws("config/entity_registry/list"):
        if entity["entity_id"].endswith(("_temperature", "_humidity")):
            await api.ws(
                "config/entity_registry/update",
                entity_id=entity["entity_id"],
                labels=[label["label_id"]],
            )


async def subscribed(home: Home) -> None:
    """Until a bridge state published now has landed: HA Ingestor's MQTT
    subscription, renewed by the reloads above, goes live a while after them, and
    readings published before would be lost. Not retained: by default HA Ingestor
    skips what a new subscription replays."""
    deadline = time.monotonic() + LANDING_TIMEOUT
    query = f'SELECT * FROM "mqtt" WHERE "topic" = \'{BRIDGE_STATE}\''
    while not home.influxdb.rows(DATABASE, query):
        if time.monotonic() > deadline:
            raise RuntimeError("HA Ingestor recorded no MQTT message")
        await home.publish([(BRIDGE_STATE, "online")], retain=False)
        await asyncio.sleep(0.5)


async def wait_until_landed(home: Home) -> None:
    """Until InfluxDB holds a point for every MQTT reading published and HA
    Ingestor holds nothing in memory: then what the report counts has landed."""
    deadline = time.monotonic() + LANDING_TIMEOUT
    while True:
        rows = home.influxdb.rows(
            DATABASE,
            f'SELECT count("payload") FROM "mqtt" WHERE "topic" != \'{BRIDGE_STATE}\'',
        )
        landed = rows[0]["count"] if rows else 0
        diagnostics = await home.api.rest(
            "GET", f"/api/diagnostics/config_entry/{home.entry_id}"
        )
        held = diagnostics["data"]["pipeline"]["memory"]["held"]
        if landed >= home.published and not held:
            return
        if time.monotonic() > deadline:
            print(
                f"\nStill not landed after {LANDING_TIMEOUT} s: {landed} of "
                f"{home.published} MQTT messages, {held} points in memory."
            )
            return
        await asyncio.sleep(0.5)


def report(influxdb: InfluxDB1Server) -> int:
    """Print what landed in InfluxDB; the number of points."""
    total = 0
    print("\nWhat HA Ingestor wrote to InfluxDB (database 'home'):")
    for row in influxdb.rows(DATABASE, "SHOW MEASUREMENTS"):
        name = row["name"]
        counts = influxdb.rows(DATABASE, f'SELECT count(*) FROM "{name}"')
        count = max((v for k, v in counts[0].items() if k != "time"), default=0)
        total += count
        print(f"  {name:>14}: {count} points")
    print("\nLatest sensor point per entity, with its registry tags:")
    tags = ("area", "floor", "device", "manufacturer", "model", "parent_device")
    for row in influxdb.rows(
        DATABASE,
        'SELECT * FROM "sensor" WHERE "integration" = \'mqtt\' '
        'GROUP BY "entity_id" ORDER BY time DESC LIMIT 1',
    ):
        enrichment = ", ".join(f"{tag}={row[tag]}" for tag in tags if row.get(tag))
        labels = f", labels={row['labels']}" if row.get("labels") else ""
        print(f"  {row['entity_id']} = {row['state']}\n      {enrichment}{labels}")
    print("\nThe hallway light, and the automation HA Ingestor names as its cause:")
    for row in influxdb.rows(
        DATABASE,
        'SELECT "state", "automation" FROM "input_boolean" ORDER BY time DESC LIMIT 3',
    ):
        when = datetime.fromtimestamp(row["time"] / 1e9, UTC).isoformat(
            timespec="milliseconds"
        )
        print(f"  {when}  {row['state']:<4}  automation={row['automation']}")
    return total


async def refresh_health(
    api: HomeAssistantClient, entry_id: str
) -> list[tuple[str, str, str]]:
    """HA Ingestor's own entities (its health sensors), refreshed now rather
    than at their next 30 s update: (entity id, state, unit)."""
    entities = await api.entity_states(entry_id)
    if live := [entity_id for entity_id, state, _ in entities if state != DISABLED]:
        await api.rest(
            "POST", "/api/services/homeassistant/update_entity", {"entity_id": live}
        )
        entities = await api.entity_states(entry_id)
    return entities


async def report_health(api: HomeAssistantClient, entry_id: str) -> None:
    print("\nHA Ingestor's health sensors:")
    entities = await refresh_health(api, entry_id)
    for entity_id, state, unit in entities or [("(none yet)", "", "")]:
        print(f"  {entity_id}: {state} {unit}".rstrip())


async def demo(args: argparse.Namespace) -> int:
    # Ctrl-C cancels this task; a plain ``kill`` should stop everything as cleanly.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        async with running_home() as home:
            print(f"Devices report every second for {args.seconds:.0f} s …")
            await supervised(home.hass, home.report_readings(args.seconds))
            await supervised(home.hass, wait_until_landed(home))
            points = report(home.influxdb)
            await supervised(home.hass, report_health(home.api, home.entry_id))
            if args.keep_running:
                print(
                    f"\nStill running: Home Assistant {home.hass.url} (user "
                    f"{OWNER['username']}, password {OWNER['password']}; HA "
                    f"Ingestor's dashboard at {home.hass.url}/{DASHBOARD_PATH}), "
                    f"InfluxDB {home.influxdb.url} (user {home.influxdb.admin_user}, "
                    f"password {home.influxdb.admin_password}). Ctrl-C stops "
                    "everything."
                )
                with contextlib.suppress(asyncio.CancelledError):
                    await supervised(home.hass, home.report_readings())
        return 0 if points else 1
    except HassExited as err:
        print(f"\n{err}", file=sys.stderr)
        return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--keep-running", action="store_true")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(asyncio.run(demo(args)))


if __name__ == "__main__":
    main()

"""The demo: a real Home Assistant process recording a small home into InfluxDB.

It starts, on 127.0.0.1 only, the same real servers the tests use (InfluxDB 1.x and
Mosquitto) and a real ``hass`` process with this repository's integration, then
does what a user does in the UI, through Home Assistant's own HTTP and WebSocket
APIs: onboards an owner, adds the MQTT integration and HA Ingestor with their
config flows, sets HA Ingestor's options, puts areas on floors and labels on
entities. Zigbee2MQTT-style devices (behind a bridge) announce themselves by MQTT
discovery and report every second; an automation switches a light on motion.
After ``--seconds`` it reads back from InfluxDB what landed, with the registry
enrichment, and HA Ingestor's diagnostics counters, then stops everything it
started, by pid. ``--keep-running`` leaves it up until Ctrl-C.

Exit status 1 when nothing was recorded, so the demo checks itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import UTC, datetime
import json
from pathlib import Path
import random
import signal
import sys
import time
from typing import Any
import urllib.request

import aiohttp
from paho.mqtt import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import InfluxDB1Server, MosquittoServer, _Server

DATABASE = "home"
OWNER = {"name": "Demo", "username": "demo", "password": "demo-password"}
DISCOVERY = "homeassistant"

CONFIGURATION = """\
homeassistant:
  name: HA Ingestor demo
  time_zone: Europe/Amsterdam
  unit_system: metric
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
auth:
config:
onboarding:
diagnostics:
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
          input_boolean.turn_{{{{ 'on' if trigger.payload_json.occupancy else 'off' }}}}
        target:
          entity_id: input_boolean.hallway_light
logger:
  default: warning
  logs:
    custom_components.ha_ingestor: info
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
                "state_topic": "zigbee2mqtt/bridge/state",
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


class HomeAssistantProcess(_Server):
    """``hass`` from this virtualenv, in a fresh configuration directory; started,
    stopped by its pid and cleaned up like the tests' servers."""

    name = "hass"
    startup_timeout = 180.0
    stop_timeout = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        components = self.tmp / "custom_components"
        components.mkdir()
        (components / "ha_ingestor").symlink_to(
            ROOT / "custom_components" / "ha_ingestor"
        )
        (self.tmp / "configuration.yaml").write_text(
            CONFIGURATION.format(port=self.port)
        )

    def _command(self) -> list[str]:
        hass = Path(sys.executable).parent / "hass"
        # --skip-pip: .venv-demo already has every requirement.
        return [str(hass), "--config", str(self.tmp), "--skip-pip"]

    def _ready(self) -> bool:
        # Onboarding answers once the HTTP server is up, before anyone logs in.
        with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2):
            return True


class Api:
    """Home Assistant's REST and WebSocket APIs, as the frontend uses them."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.token = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._id = 0

    async def onboard(self) -> None:
        """Create the owner, as the first screen of a new install does."""
        client_id = f"{self.url}/"
        async with self.session.post(
            f"{self.url}/api/onboarding/users",
            json={**OWNER, "client_id": client_id, "language": "en"},
        ) as response:
            response.raise_for_status()
            code = (await response.json())["auth_code"]
        async with self.session.post(
            f"{self.url}/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client_id,
            },
        ) as response:
            response.raise_for_status()
            self.token = (await response.json())["access_token"]

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {await response.text()}")
            return await response.json()

    async def config_flow(self, handler: str, *steps: dict[str, Any]) -> str:
        """Run a config flow through its steps; the new entry's id."""
        result = await self.rest(
            "POST", "/api/config/config_entries/flow", {"handler": handler}
        )
        for step in steps:
            result = await self.rest(
                "POST", f"/api/config/config_entries/flow/{result['flow_id']}", step
            )
            if result.get("errors"):
                raise RuntimeError(f"{handler} flow: {result['errors']}")
        if result["type"] != "create_entry":
            raise RuntimeError(f"{handler} flow did not finish: {result}")
        return str(result["result"]["entry_id"])

    async def options_flow(self, entry_id: str, options: dict[str, Any]) -> None:
        result = await self.rest(
            "POST", "/api/config/config_entries/options/flow", {"handler": entry_id}
        )
        result = await self.rest(
            "POST",
            f"/api/config/config_entries/options/flow/{result['flow_id']}",
            options,
        )
        if result["type"] != "create_entry":
            raise RuntimeError(f"options flow: {result}")

    async def ws(self, command: str, **data: Any) -> Any:
        if self._ws is None:
            self._ws = await self.session.ws_connect(f"{self.url}/api/websocket")
            await self._ws.receive_json()  # auth_required
            await self._ws.send_json({"type": "auth", "access_token": self.token})
            if (await self._ws.receive_json())["type"] != "auth_ok":
                raise RuntimeError("WebSocket authentication failed")
        self._id += 1
        await self._ws.send_json({"id": self._id, "type": command, **data})
        while True:
            message = await self._ws.receive_json()
            if message.get("id") == self._id:
                if not message["success"]:
                    raise RuntimeError(f"{command}: {message['error']}")
                return message["result"]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


async def organise_home(api: Api) -> None:
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


def report(influxdb: InfluxDB1Server, diagnostics: dict[str, Any]) -> int:
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
        'SELECT * FROM "sensor" GROUP BY "entity_id" ORDER BY time DESC LIMIT 1',
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
    counters = diagnostics.get("data", {}).get("pipeline", {}).get("stats", {})
    if counters:
        print("\nHA Ingestor's diagnostics counters:")
        for key, value in counters.items():
            print(f"  {key}: {value}")
    return total


async def demo(args: argparse.Namespace) -> int:
    # Ctrl-C cancels this task; a plain ``kill`` should stop everything as cleanly.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    influxdb = InfluxDB1Server().start()
    mosquitto = MosquittoServer().start()
    hass = HomeAssistantProcess()
    try:
        influxdb.create_database(DATABASE)
        print(
            f"InfluxDB 1.x on {influxdb.url}, Mosquitto on 127.0.0.1:{mosquitto.port}"
        )
        print(f"Starting Home Assistant ({hass.tmp}) on {hass.url} …")
        hass.start()
        async with aiohttp.ClientSession() as session:
            api = Api(session, hass.url)
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
            entry_id = await api.config_flow(
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
            await api.options_flow(
                entry_id,
                {
                    "event_types": ["state_changed", "automation_triggered"],
                    "mqtt_topics": ["zigbee2mqtt/#"],
                    "batch_size": 1000,
                    "flush_interval": 1,
                    "measurement": "domain",
                },
            )
            # The automation's MQTT trigger could not attach before MQTT was set
            # up; turning it off and on attaches it (a reload skips it: its
            # configuration did not change).
            for action in ("turn_off", "turn_on"):
                await api.rest(
                    "POST",
                    f"/api/services/automation/{action}",
                    {"entity_id": "automation.hallway_light_follows_motion"},
                )
            print("Onboarded, MQTT and HA Ingestor added through their config flows.")
            broker = {"hostname": "127.0.0.1", "port": mosquitto.port}
            await asyncio.to_thread(
                publish.multiple,
                [(topic, payload, 0, True) for topic, payload in discovery_messages()]
                + [("zigbee2mqtt/bridge/state", "online", 0, True)],
                **broker,
            )
            await organise_home(api)
            readings = Readings()
            print(f"Devices report every second for {args.seconds:.0f} s …")
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                await asyncio.to_thread(
                    publish.multiple,
                    [(topic, payload, 0, False) for topic, payload in readings.next()],
                    **broker,
                )
                await asyncio.sleep(1)
            await asyncio.sleep(2)  # one flush interval, and a margin
            diagnostics = await api.rest(
                "GET", f"/api/diagnostics/config_entry/{entry_id}"
            )
            points = report(influxdb, diagnostics)
            if args.keep_running:
                print(
                    f"\nStill running: Home Assistant API {hass.url} (user "
                    f"{OWNER['username']}, password {OWNER['password']}), InfluxDB "
                    f"{influxdb.url} (user {influxdb.admin_user}, password "
                    f"{influxdb.admin_password}). Ctrl-C stops everything."
                )
                with contextlib.suppress(asyncio.CancelledError):
                    while True:
                        await asyncio.to_thread(
                            publish.multiple,
                            [(t, p, 0, False) for t, p in readings.next()],
                            **broker,
                        )
                        await asyncio.sleep(1)
            await api.close()
        return 0 if points else 1
    finally:
        print("Stopping Home Assistant, Mosquitto and InfluxDB …")
        hass.cleanup()
        mosquitto.cleanup()
        influxdb.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--keep-running", action="store_true")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(asyncio.run(demo(args)))


if __name__ == "__main__":
    main()

"""scripts/develop: a real Home Assistant running this repository's integration.

``hass -c .dev/config`` (tests/hass_process.py's process) with HA Ingestor linked in
and its logger at debug, beside a local InfluxDB 1.x and Mosquitto (the tests'
servers), all on 127.0.0.1. Everything lives in .dev/ (ignored by git) and is kept
between runs: the configuration, Home Assistant's storage, InfluxDB's data. So the
ports are fixed: the entries Home Assistant stores point at them. The first run
onboards the demo's owner and adds MQTT and HA Ingestor with their config flows, as
the demo does (demo/run.py). hass's output follows on the terminal; a restart from
the UI (exit status 100) starts it again with the integration's current code.
Ctrl-C or SIGTERM stops hass, Mosquitto and InfluxDB, by pid.
"""

from __future__ import annotations

import asyncio
import getpass
from http import HTTPStatus
import json
from pathlib import Path
import shutil
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any
import urllib.error
import urllib.request

import aiohttp
from homeassistant.const import RESTART_EXIT_CODE
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo.run import DATABASE, add_integrations
from tests.hass_process import (
    CONFIGURATION,
    OWNER,
    HomeAssistantClient,
    HomeAssistantProcess,
)
from tests.servers import InfluxDB1Server, MosquittoServer, _Server

DEV = ROOT / ".dev"
HASS_PORT = 8123
INFLUXDB_PORT = 18086
INFLUXDB_BIND_PORT = 18088
MOSQUITTO_PORT = 11883

INFLUXDB_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{bind_port}"
[meta]
  dir = "{home}/meta"
[data]
  dir = "{home}/data"
  wal-dir = "{home}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = true
  log-enabled = false
[monitor]
  store-enabled = false
"""


def settle(server: _Server, name: str, port: int) -> Path:
    """Move ``server`` from the fresh temporary directory the tests' base class
    made into .dev/<name>, kept between runs, onto a fixed port."""
    shutil.rmtree(server.tmp)
    server.tmp = DEV / name
    server.tmp.mkdir(parents=True, exist_ok=True)
    server.port = port
    server._log = server.tmp / "server.log"
    return server.tmp


class DevInfluxDB(InfluxDB1Server):
    def __init__(self) -> None:
        super().__init__()
        home = settle(self, "influxdb", INFLUXDB_PORT)
        self._bind_port = INFLUXDB_BIND_PORT
        self._config = home / "influxdb.conf"
        self._config.write_text(
            INFLUXDB_CONFIG.format(
                home=home, port=INFLUXDB_PORT, bind_port=INFLUXDB_BIND_PORT
            )
        )
        # Once the admin user exists, creating it again is refused.
        self._admin_created = (home / "meta" / "meta.db").exists()


class DevMosquitto(MosquittoServer):
    def __init__(self) -> None:
        super().__init__()
        home = settle(self, "mosquitto", MOSQUITTO_PORT)
        self._config = home / "mosquitto.conf"
        # Persistent: retained discovery messages outlive a restart, as on a real
        # broker.
        self._config.write_text(
            f"listener {MOSQUITTO_PORT} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {home}/\n"
            f"user {getpass.getuser()}\n"
        )


class DevHomeAssistant(HomeAssistantProcess):
    def __init__(self) -> None:
        super().__init__()
        config = settle(self, "config", HASS_PORT)
        self.url = f"http://127.0.0.1:{HASS_PORT}"
        link = config / "custom_components" / "ha_ingestor"
        if not link.is_symlink():
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(ROOT / "custom_components" / "ha_ingestor")
        # Written once: after that it is the developer's to edit.
        if not (config / "configuration.yaml").exists():
            (config / "configuration.yaml").write_text(configuration())

    def _ready(self) -> bool:
        # Once onboarding is done its API is gone; the UI's manifest is always there.
        with urllib.request.urlopen(f"{self.url}/manifest.json", timeout=2):
            return True

    def onboarded(self) -> bool:
        url = f"{self.url}/api/onboarding"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                steps: list[dict[str, Any]] = json.load(reply)
        except urllib.error.HTTPError as err:
            if err.code == HTTPStatus.NOT_FOUND:
                return True
            raise
        return all(step["done"] for step in steps if step["step"] == "user")


def configuration() -> str:
    """The tests' and the demo's configuration, with HA Ingestor's debug log."""
    config = yaml.safe_load(CONFIGURATION.format(port=HASS_PORT))
    config["homeassistant"]["name"] = "HA Ingestor development"
    config["logger"]["logs"]["custom_components.ha_ingestor"] = "debug"
    config |= {"recorder": None, "history": None}
    return yaml.safe_dump(config, sort_keys=False)


def check_ports_free() -> None:
    for port in (HASS_PORT, INFLUXDB_PORT, INFLUXDB_BIND_PORT, MOSQUITTO_PORT):
        with socket.socket() as sock:
            # As the servers bind: connections of a previous run in TIME_WAIT
            # don't count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sys.exit(f"Port {port} is in use: is scripts/develop running already?")


async def first_run(
    hass: DevHomeAssistant, influxdb: InfluxDB1Server, mosquitto: MosquittoServer
) -> None:
    async with aiohttp.ClientSession() as session:
        api = HomeAssistantClient(session, hass)
        try:
            await add_integrations(api, influxdb, mosquitto)
        finally:
            await api.close()


def follow(path: Path, offset: int) -> int:
    """Echo what ``path`` gained since ``offset``; the new offset."""
    with path.open("rb") as log:
        log.seek(offset)
        if added := log.read():
            sys.stdout.buffer.write(added)
            sys.stdout.flush()
    return offset + len(added)


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    check_ports_free()
    # SIGINT too: a shell starting this in the background may have it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    influxdb, mosquitto, hass = DevInfluxDB(), DevMosquitto(), DevHomeAssistant()
    try:
        influxdb.start()
        mosquitto.start()
        influxdb.create_database(DATABASE)
        offset = hass._log.stat().st_size if hass._log.exists() else 0
        print(f"Starting Home Assistant ({hass.tmp}) on {hass.url} …")
        hass.start()
        if not hass.onboarded():
            print("First run: onboarding, adding MQTT and HA Ingestor …")
            asyncio.run(first_run(hass, influxdb, mosquitto))
        print(
            f"\nHome Assistant: {hass.url} (user {OWNER['username']}, password "
            f"{OWNER['password']})\nInfluxDB 1.x: {influxdb.url} (user "
            f"{influxdb.admin_user}, password {influxdb.admin_password}, database "
            f"{DATABASE})\nMosquitto: 127.0.0.1:{mosquitto.port}\nState and logs: "
            f"{DEV}; hass's output follows. Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            offset = follow(hass._log, offset)
            if (code := hass.exit_code) == RESTART_EXIT_CODE:
                print("Home Assistant asked for a restart: starting it again …")
                hass.start()
            elif code is not None:
                print(f"Home Assistant exited by itself (status {code}).")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not leave a server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping Home Assistant, Mosquitto and InfluxDB …")
        hass.stop()
        mosquitto.stop()
        influxdb.stop()


if __name__ == "__main__":
    sys.exit(main())

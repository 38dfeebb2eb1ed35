"""MQTT republish: enriched events through HA's MQTT integration and a real broker,
as an independent MQTT client of the broker receives them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
import json
import logging
import re
from types import TracebackType
from typing import Any, Self
from unittest.mock import patch
from uuid import uuid4

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Context, HomeAssistant, callback
from paho.mqtt import publish
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.republish import RepublishStats

from .servers import InfluxDB1Server, MosquittoServer

type ConnectMqtt = Callable[[MosquittoServer], Awaitable[MockConfigEntry]]

# A bound on waiting for the network, never an assertion about how long it took.
NETWORK_TIMEOUT = 30.0
PSEUDONYM = re.compile(r"^user_[0-9a-f]{16}$")


class _Subscriber:
    """An MQTT client of the test's own, with its own network thread: what any
    consumer of the republished events (Node-RED, a second database) sees."""

    def __init__(
        self, hass: HomeAssistant, server: MosquittoServer, topic: str
    ) -> None:
        self._hass = hass
        self._server = server
        self._topic = topic
        self._messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._subscribed: asyncio.Future[None] = hass.loop.create_future()
        self._client = Client(CallbackAPIVersion.VERSION2, client_id=uuid4().hex)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    async def __aenter__(self) -> Self:
        await self._hass.async_add_executor_job(
            self._client.connect, "127.0.0.1", self._server.port
        )
        self._client.loop_start()
        async with asyncio.timeout(NETWORK_TIMEOUT):
            await self._subscribed
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        await self._hass.async_add_executor_job(self._client.loop_stop)

    # paho calls these on its own thread.
    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._hass.loop.call_soon_threadsafe(self._set_subscribed)

    def _set_subscribed(self) -> None:
        if not self._subscribed.done():
            self._subscribed.set_result(None)

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        # Anything a test before left retained on the shared broker is no event.
        if not message.retain:
            self._hass.loop.call_soon_threadsafe(
                self._messages.put_nowait, (message.topic, message.payload)
            )

    async def until(self, topic: str) -> list[tuple[str, bytes]]:
        """Every message received from now on, up to the first one on ``topic``."""
        received: list[tuple[str, bytes]] = []
        async with asyncio.timeout(NETWORK_TIMEOUT):
            while not received or received[-1][0] != topic:
                received.append(await self._messages.get())
        return received

    async def next_on(self, topic: str) -> bytes:
        """The next message's payload on ``topic`` (others received meanwhile
        are skipped)."""
        return (await self.until(topic))[-1][1]


@pytest.fixture
def no_configuration_yaml() -> Iterator[None]:
    """MQTT reads configuration.yaml on setup and reload; the harness has none."""
    with patch("homeassistant.config.load_yaml_config_file", return_value={}):
        yield


@pytest.fixture
def quick_mqtt_pauses() -> Iterator[None]:
    """HA's MQTT client waits in real time (a plain ``asyncio.sleep``, which no
    fake clock moves) 5 s after connecting before its birth message and 10 s
    between attempts to reach a lost broker: shorter pauses keep a test that
    restarts the broker quick."""
    client = "homeassistant.components.mqtt.client"
    with (
        patch(f"{client}.DISCOVERY_COOLDOWN", 0.1),
        patch(f"{client}.RECONNECT_INTERVAL_SECONDS", 0.1),
    ):
        yield


@pytest.fixture
def private_mosquitto(socket_enabled: None) -> Iterator[MosquittoServer]:
    """A Mosquitto broker of the test's own, which it may stop and restart."""
    server = MosquittoServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def connect_mqtt(
    hass: HomeAssistant, socket_enabled: None, no_configuration_yaml: None
) -> AsyncIterator[ConnectMqtt]:
    """Set up HA's MQTT integration against a real broker and wait until its
    client is connected; unloaded at the end of the test."""
    entries: list[MockConfigEntry] = []

    async def _connect(server: MosquittoServer) -> MockConfigEntry:
        entry = MockConfigEntry(
            domain="mqtt", data={"broker": "127.0.0.1", "port": server.port}
        )
        entry.add_to_hass(hass)
        entries.append(entry)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await _until_mqtt(hass, connected=True)
        return entry

    yield _connect
    for entry in entries:
        if entry.state is ConfigEntryState.LOADED:
            assert await hass.config_entries.async_unload(entry.entry_id)


async def _until_mqtt(hass: HomeAssistant, *, connected: bool) -> None:
    """Wait until HA's MQTT client is connected (or has seen the broker go)."""
    changed = asyncio.Event()

    @callback
    def _on_status(status: bool) -> None:
        if status is connected:
            changed.set()

    unsubscribe = mqtt.async_subscribe_connection_status(hass, _on_status)
    try:
        if mqtt.is_connected(hass) is not connected:
            async with asyncio.timeout(NETWORK_TIMEOUT):
                await changed.wait()
    finally:
        unsubscribe()


async def _setup_ingestor(
    hass: HomeAssistant, server: InfluxDB1Server, **options: Any
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="test",
        data=server.entry_data(),
        options={"event_types": ["state_changed"], "republish": True, **options},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _republish_stats(entry: MockConfigEntry) -> RepublishStats:
    republisher = entry.runtime_data.republisher
    assert republisher is not None
    stats: RepublishStats = republisher.stats
    return stats


async def _publish_until_captured(
    hass: HomeAssistant, server: MosquittoServer, topic: str
) -> str:
    """Publish numbered payloads to ``topic`` from a client of the test's own
    until HA's MQTT hands one to a subscription of the test's own on ``topic``,
    and return it: HA Ingestor's subscription, made before, has then had it too.
    (HA's MQTT sends its subscriptions to the broker in batches, a little later.)"""
    heard: asyncio.Future[str] = hass.loop.create_future()

    @callback
    def _on_message(message: mqtt.ReceiveMessage) -> None:
        payload = message.payload
        assert isinstance(payload, bytes)  # encoding=None
        if not heard.done():
            heard.set_result(payload.decode())

    unsubscribe = await mqtt.async_subscribe(hass, topic, _on_message, encoding=None)
    try:
        for attempt in range(100):
            await hass.async_add_executor_job(
                partial(
                    publish.single,
                    topic,
                    f"live {attempt}",
                    hostname="127.0.0.1",
                    port=server.port,
                )
            )
            try:
                async with asyncio.timeout(0.05):
                    return await asyncio.shield(heard)
            except TimeoutError:
                continue
        raise AssertionError(f"nothing published to {topic} arrived")
    finally:
        unsubscribe()


async def test_subscriber_receives_enriched_json_at_the_documented_topic(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    connect_mqtt: ConnectMqtt,
) -> None:
    """A state change reaches any subscriber of the broker as compact JSON at
    ``ha_ingestor/<domain>/<object_id>/event``. A message HA Ingestor captured
    from MQTT is recorded but never published again: that could loop."""
    captured_topic = f"ha_ingestor_test/{uuid4().hex}/power"
    await connect_mqtt(mosquitto_server)
    entry = await _setup_ingestor(hass, influxdb_v1, mqtt_topics=[captured_topic])

    async with _Subscriber(hass, mosquitto_server, "ha_ingestor/#") as subscriber:
        hass.states.async_set(
            "sensor.outdoor",
            "12.5",
            {"unit_of_measurement": "°C", "friendly_name": "Outdoor", "battery": 90},
        )
        state = hass.states.get("sensor.outdoor")
        assert state is not None
        [(_, payload)] = await subscriber.until("ha_ingestor/sensor/outdoor/event")
        event = json.loads(payload)
        assert payload == json.dumps(
            event, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        assert event["event_type"] == "state_changed"
        assert event["entity_id"] == "sensor.outdoor"
        assert event["domain"] == "sensor"
        assert event["state"] == "12.5"
        assert event["value"] == 12.5
        assert event["friendly_name"] == "Outdoor"
        assert event["attributes"] == {"battery": 90}
        assert event["unit"] == "°C"
        assert event["time"].endswith("Z")
        assert event["context_id"] == state.context.id

        live = await _publish_until_captured(hass, mosquitto_server, captured_topic)
        hass.states.async_set("sensor.sentinel", "1")
        received = await subscriber.until("ha_ingestor/sensor/sentinel/event")

    assert [topic for topic, _ in received] == ["ha_ingestor/sensor/sentinel/event"]
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    rows = influxdb_v1.rows("home", "SELECT * FROM mqtt")
    assert live in {row["payload"] for row in rows if row["topic"] == captured_topic}
    assert _republish_stats(entry).sent == 2


async def test_broker_down_drops_and_counts_while_capture_and_influxdb_go_on(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    private_mosquitto: MosquittoServer,
    connect_mqtt: ConnectMqtt,
    quick_mqtt_pauses: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the broker is down every event is still written to InfluxDB, and
    each one is dropped from republish and counted, never queued or raised; it
    is logged once as down and once as back, and the next event after that is
    published again."""
    caplog.set_level(logging.INFO, logger="custom_components.ha_ingestor")
    # HA's MQTT is fully up once it has sent its birth message; a broker lost
    # before would fail that publish inside HA's MQTT, which is not under test.
    async with _Subscriber(hass, private_mosquitto, "homeassistant/status") as status:
        await connect_mqtt(private_mosquitto)
        assert await status.next_on("homeassistant/status") == b"online"
    entry = await _setup_ingestor(hass, influxdb_v1)
    stats = _republish_stats(entry)

    private_mosquitto.stop()
    await _until_mqtt(hass, connected=False)
    for number in range(25):
        hass.states.async_set(f"sensor.outage_{number % 5}", str(number))
    await hass.async_block_till_done()
    assert stats.dropped == 25
    assert stats.sent == 0
    assert stats.connected is False
    assert await entry.runtime_data.pipeline.async_flush()
    [series] = influxdb_v1.query("home", "SELECT count(value) FROM sensor")
    assert series["values"][0][1] == 25

    private_mosquitto.start()
    await _until_mqtt(hass, connected=True)
    async with _Subscriber(hass, private_mosquitto, "ha_ingestor/#") as subscriber:
        hass.states.async_set("sensor.back", "1")
        event = json.loads(await subscriber.next_on("ha_ingestor/sensor/back/event"))
    assert event["entity_id"] == "sensor.back"
    await hass.async_block_till_done()
    assert (stats.sent, stats.dropped, stats.connected) == (1, 25, True)

    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    assert not [r for r in ours if r.levelno >= logging.ERROR or r.exc_info]
    assert sum("not connected" in r.getMessage() for r in ours) == 1
    assert sum("connected again" in r.getMessage() for r in ours) == 1


async def test_republished_events_hold_no_location_or_clear_user_name(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    connect_mqtt: ConnectMqtt,
) -> None:
    """Coordinates are stripped by default; with ``pseudonymize_users`` the user
    who caused a change is a stable ``user_<16 hex>`` pseudonym, never the name."""
    user = await hass.auth.async_create_user("Alice Example")
    await connect_mqtt(mosquitto_server)
    await _setup_ingestor(hass, influxdb_v1, pseudonymize_users=True)

    async with _Subscriber(hass, mosquitto_server, "ha_ingestor/#") as subscriber:
        hass.states.async_set(
            "device_tracker.phone",
            "home",
            {
                "latitude": 52.3731,
                "longitude": 4.8922,
                "gps_accuracy": 12,
                "altitude": 3.5,
                "battery_level": 80,
                "source_type": "gps",
            },
        )
        [(_, tracker)] = await subscriber.until(
            "ha_ingestor/device_tracker/phone/event"
        )
        hass.states.async_set(
            "input_boolean.heating", "on", context=Context(user_id=user.id)
        )
        [(_, switched)] = await subscriber.until(
            "ha_ingestor/input_boolean/heating/event"
        )

    for key in (b"latitude", b"longitude", b"gps_accuracy", b"altitude"):
        assert key not in tracker
    assert json.loads(tracker)["attributes"] == {
        "battery_level": 80,
        "source_type": "gps",
    }
    assert b"Alice" not in switched
    assert PSEUDONYM.match(json.loads(switched)["user"])

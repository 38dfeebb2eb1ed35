"""Capture: deduplication, and MQTT through HA's MQTT integration and a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from functools import partial
import logging
import time
from typing import Any
from unittest.mock import patch
from uuid import uuid4

from homeassistant.components import mqtt
from homeassistant.components.mqtt.models import DATA_MQTT
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util import dt as dt_util
from paho.mqtt import publish
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_fire_time_changed_exact,
)

from custom_components.ha_ingestor.capture import Capture, Deduplicator
from custom_components.ha_ingestor.const import DOMAIN

from .servers import InfluxDB1Server, MosquittoServer


def test_deduplicator_forgets_values_older_than_its_window() -> None:
    """Keys that can no longer suppress a repeat are dropped, so topics with ids
    in them do not grow the table without bound."""
    dedup = Deduplicator(window=10)
    assert not dedup.repeated("sensor.a", "1", 0.0)
    assert dedup.repeated("sensor.a", "1", 5.0)
    for device in range(1000):
        assert not dedup.repeated(("mqtt", f"tele/{device}"), b"1", 100 + device / 1000)
    assert len(dedup) == 1000
    assert not dedup.repeated("sensor.a", "1", 200.0)
    assert len(dedup) == 1


def test_deduplicator_evicts_the_oldest_key_beyond_its_cap() -> None:
    """Within the window the table holds at most ``max_keys``; the key kept
    longest ago goes first, and a key kept again counts as new."""
    dedup = Deduplicator(window=60, max_keys=3)
    for key in "abc":
        dedup.repeated(key, 1, 0.0)
    assert not dedup.repeated("a", 2, 1.0)  # a new value: "a" is now the newest
    assert not dedup.repeated("d", 1, 2.0)  # evicts "b"
    assert len(dedup) == 3
    assert dedup.repeated("a", 2, 3.0)
    assert dedup.repeated("c", 1, 3.0)
    assert dedup.repeated("d", 1, 3.0)
    assert not dedup.repeated("b", 1, 3.0)


@pytest.fixture
def topic_root() -> str:
    """A topic prefix of the test's own: the broker outlives the test."""
    return f"ha_ingestor_test/{uuid4().hex}"


@pytest.fixture
def no_configuration_yaml() -> Iterator[None]:
    """MQTT reads configuration.yaml on setup and reload; the harness has none."""
    with patch("homeassistant.config.load_yaml_config_file", return_value={}):
        yield


@pytest.fixture
async def mqtt_entry(
    hass: HomeAssistant,
    mosquitto_server: MosquittoServer,
    socket_enabled: None,
    no_configuration_yaml: None,
) -> AsyncIterator[MockConfigEntry]:
    """HA's MQTT integration's entry for the real broker, added but not set up."""
    entry = MockConfigEntry(
        domain="mqtt", data={"broker": "127.0.0.1", "port": mosquitto_server.port}
    )
    entry.add_to_hass(hass)
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


async def _setup_mqtt(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def _setup_ingestor(
    hass: HomeAssistant, server: InfluxDB1Server, options: dict[str, Any]
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="test",
        data=server.entry_data(),
        options={"event_types": [], **options},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _publish(
    hass: HomeAssistant,
    server: MosquittoServer,
    topic: str,
    payload: bytes,
    retain: bool = False,
) -> None:
    await hass.async_add_executor_job(
        partial(
            publish.single,
            topic,
            payload,
            retain=retain,
            hostname="127.0.0.1",
            port=server.port,
        )
    )


async def _publish_until_heard(
    hass: HomeAssistant, server: MosquittoServer, subscribed: str, topic: str
) -> bytes:
    """Publish numbered payloads to ``topic`` until a subscriber of the test's
    own on ``subscribed`` gets one, and return it: every subscription to
    ``subscribed`` made before has then received that message too."""
    heard: asyncio.Future[bytes] = hass.loop.create_future()

    @callback
    def _on_message(message: mqtt.ReceiveMessage) -> None:
        if not message.retain and not heard.done():
            heard.set_result(message.payload)  # bytes: encoding=None

    unsubscribe = await mqtt.async_subscribe(
        hass, subscribed, _on_message, encoding=None
    )
    try:
        for attempt in range(100):
            await _publish(hass, server, topic, f"live {attempt}".encode())
            try:
                async with asyncio.timeout(0.05):
                    return await asyncio.shield(heard)
            except TimeoutError:
                continue
        raise AssertionError(f"nothing published to {topic} arrived")
    finally:
        unsubscribe()


def _subscribed_topics(hass: HomeAssistant, capture: Capture) -> list[str]:
    """The topics HA's MQTT client delivers to ``capture``, counting what it
    keeps to restore into its next client after a reload."""
    data = hass.data[DATA_MQTT]
    return sorted(
        subscription.topic
        for subscription in (*data.client.subscriptions, *data.subscriptions_to_restore)
        if getattr(subscription.job.target, "__self__", None) is capture
    )


async def _mqtt_rows(
    hass: HomeAssistant, entry: MockConfigEntry, server: InfluxDB1Server
) -> list[dict[str, Any]]:
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    return server.rows("home", "SELECT * FROM mqtt")


async def test_retained_messages_are_not_recorded_again_on_subscribe(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
) -> None:
    """The broker replays its stored copy of a retained message to every new
    subscription: that is no new reading, so by default it is skipped
    (counted as filtered) and only live messages are recorded."""
    await _publish(hass, mosquitto_server, f"{topic_root}/lamp", b"stored", retain=True)
    await _setup_mqtt(hass, mqtt_entry)
    entry = await _setup_ingestor(
        hass, influxdb_v1, {"mqtt_topics": [f"{topic_root}/#"]}
    )
    try:
        live = await _publish_until_heard(
            hass, mosquitto_server, f"{topic_root}/#", f"{topic_root}/lamp"
        )
        rows = await _mqtt_rows(hass, entry, influxdb_v1)
        assert live.decode() in {row["payload"] for row in rows}
        assert "stored" not in {row["payload"] for row in rows}
        assert entry.runtime_data.stats.filtered == 1
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await _publish(hass, mosquitto_server, f"{topic_root}/lamp", b"", retain=True)


async def test_retained_messages_are_recorded_with_a_tag_when_enabled(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
) -> None:
    """With ``mqtt_retained`` on, the replayed copy is recorded, tagged
    ``retained=true``; live messages carry no such tag."""
    await _publish(hass, mosquitto_server, f"{topic_root}/lamp", b"stored", retain=True)
    await _setup_mqtt(hass, mqtt_entry)
    entry = await _setup_ingestor(
        hass,
        influxdb_v1,
        {"mqtt_topics": [f"{topic_root}/#"], "mqtt_retained": True},
    )
    try:
        live = await _publish_until_heard(
            hass, mosquitto_server, f"{topic_root}/#", f"{topic_root}/lamp"
        )
        rows = {
            row["payload"]: row for row in await _mqtt_rows(hass, entry, influxdb_v1)
        }
        assert rows["stored"]["retained"] == "true"
        assert rows[live.decode()]["retained"] is None
        assert entry.runtime_data.stats.filtered == 0
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await _publish(hass, mosquitto_server, f"{topic_root}/lamp", b"", retain=True)


async def test_mqtt_reload_leaves_one_subscription_per_topic(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
) -> None:
    """MQTT carries the subscriptions left at its unload into its next client.
    Ours are dropped as it unloads and made again once it is back, so a message
    is recorded once, and unloading HA Ingestor leaves nothing behind."""
    topic = f"{topic_root}/power"
    await _setup_mqtt(hass, mqtt_entry)
    entry = await _setup_ingestor(hass, influxdb_v1, {"mqtt_topics": [topic]})
    capture = entry.runtime_data.capture
    assert _subscribed_topics(hass, capture) == [topic]

    assert await hass.config_entries.async_reload(mqtt_entry.entry_id)
    await hass.async_block_till_done()
    assert _subscribed_topics(hass, capture) == [topic]
    live = await _publish_until_heard(hass, mosquitto_server, topic, topic)
    rows = await _mqtt_rows(hass, entry, influxdb_v1)
    assert [row["payload"] for row in rows].count(live.decode()) == 1

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert _subscribed_topics(hass, capture) == []


async def test_unload_while_mqtt_sets_up_subscribes_nothing_and_spares_other_waiters(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
) -> None:
    """Unloaded while MQTT is still setting up, HA Ingestor subscribes to nothing
    once MQTT is up; and it never cancels HA's shared wait for the MQTT client,
    which other integrations are awaiting too."""
    topic = f"{topic_root}/power"
    entry = await _setup_ingestor(hass, influxdb_v1, {"mqtt_topics": [topic]})
    capture = entry.runtime_data.capture
    stats = entry.runtime_data.stats
    other_integration = hass.async_create_task(mqtt.async_wait_for_mqtt_client(hass))
    setting_up = asyncio.Event()

    @callback
    def _on_entry_changed(change: ConfigEntryChange, changed: ConfigEntry) -> None:
        if (
            changed is mqtt_entry
            and changed.state is ConfigEntryState.SETUP_IN_PROGRESS
        ):
            setting_up.set()

    unsubscribe = async_dispatcher_connect(
        hass, SIGNAL_CONFIG_ENTRY_CHANGED, _on_entry_changed
    )
    setup = hass.async_create_task(hass.config_entries.async_setup(mqtt_entry.entry_id))
    async with asyncio.timeout(10):
        await setting_up.wait()
    unsubscribe()
    assert mqtt_entry.state is ConfigEntryState.SETUP_IN_PROGRESS

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await setup
    await hass.async_block_till_done()
    assert await other_integration
    assert _subscribed_topics(hass, capture) == []
    await _publish_until_heard(hass, mosquitto_server, topic, topic)
    assert stats.events_received == 0


class _RefusingSubscribe:
    """A stand-in for ``mqtt.async_subscribe`` that refuses ``topic`` the first
    ``refusals`` times (None: always), noting when it is asked for it."""

    def __init__(self, topic: str, refusals: int | None) -> None:
        self._topic = topic
        self._refusals = refusals
        self._real = mqtt.async_subscribe
        self.asked: list[float] = []

    async def __call__(
        self, hass: HomeAssistant, topic: str, *args: Any, **kwargs: Any
    ) -> Any:
        if topic == self._topic:
            self.asked.append(time.time())
            if self._refusals is None or len(self.asked) <= self._refusals:
                raise HomeAssistantError(f"refused {topic}")
        return await self._real(hass, topic, *args, **kwargs)


async def test_failing_topic_is_retried_with_backoff_and_then_recorded(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused topic does not hold up the others; it is retried after 1 s, then
    2 s, …, logged once when refused and once when subscribed.

    No local server makes HA's MQTT refuse a subscription once it is loaded, so
    this one test patches ``mqtt.async_subscribe`` to refuse a topic twice.
    """
    caplog.set_level(logging.INFO, logger="custom_components.ha_ingestor")
    flaky, steady = f"{topic_root}/flaky", f"{topic_root}/steady"
    await _setup_mqtt(hass, mqtt_entry)
    subscribe = _RefusingSubscribe(flaky, refusals=2)
    with patch.object(mqtt, "async_subscribe", subscribe):
        entry = await _setup_ingestor(
            hass, influxdb_v1, {"mqtt_topics": [flaky, steady]}
        )
        capture = entry.runtime_data.capture
        assert _subscribed_topics(hass, capture) == [steady]
        for wait in (1, 2):  # the third attempt succeeds
            refused_at = subscribe.asked[-1]
            for early_or_late, attempts in ((0.75, wait), (1.25, wait + 1)):
                moment = refused_at + wait * early_or_late
                async_fire_time_changed_exact(hass, dt_util.utc_from_timestamp(moment))
                await hass.async_block_till_done()
                assert len(subscribe.asked) == attempts
    assert _subscribed_topics(hass, capture) == [flaky, steady]

    live = await _publish_until_heard(hass, mosquitto_server, flaky, flaky)
    rows = await _mqtt_rows(hass, entry, influxdb_v1)
    assert live.decode() in {row["payload"] for row in rows if row["topic"] == flaky}
    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    refused = [r for r in ours if "refused" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.WARNING]
    assert sum("again" in r.getMessage() for r in ours) == 1


async def test_unload_during_retry_unsubscribes_every_topic(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    mosquitto_server: MosquittoServer,
    mqtt_entry: MockConfigEntry,
    topic_root: str,
) -> None:
    """Unloaded while waiting to retry a refused topic, HA Ingestor cancels the
    retry and unsubscribes the topics it had; nothing is recorded afterwards.

    As above, a refusal needs ``mqtt.async_subscribe`` patched.
    """
    refused, accepted = f"{topic_root}/refused", f"{topic_root}/accepted"
    await _setup_mqtt(hass, mqtt_entry)
    subscribe = _RefusingSubscribe(refused, refusals=None)
    with patch.object(mqtt, "async_subscribe", subscribe):
        entry = await _setup_ingestor(
            hass, influxdb_v1, {"mqtt_topics": [refused, accepted]}
        )
        capture = entry.runtime_data.capture
        stats = entry.runtime_data.stats
        assert _subscribed_topics(hass, capture) == [accepted]
        assert await hass.config_entries.async_unload(entry.entry_id)
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=10))
        await hass.async_block_till_done()
    assert len(subscribe.asked) == 1
    assert _subscribed_topics(hass, capture) == []
    await _publish_until_heard(hass, mosquitto_server, accepted, accepted)
    assert stats.events_received == 0

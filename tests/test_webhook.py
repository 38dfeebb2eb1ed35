"""The webhook sink as a receiver sees it: signed batches of enriched events,
each event delivered through outages and reloads, never a location or a clear
user name, and a refused signature that pauses the webhook alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
import hashlib
import hmac
import json
import re
from typing import Any

import aiohttp
from aiohttp import web
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
    label_registry as lr,
)
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.ha_ingestor.const import BACKOFF_MAX, DOMAIN

from .fake_influxdb import FakeInfluxDB
from .local_http import LocalHttpServer

SECRET = "shared-webhook-secret"
SIGNATURE = "X-HA-Ingestor-Signature"


def verified(secret: str, header: str, body: bytes) -> bool:
    """The receiver's check: ``t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    parts = dict(part.partition("=")[::2] for part in header.split(","))
    timestamp, digest = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit():
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, digest)


@dataclass(kw_only=True)
class Receiver(LocalHttpServer):
    """A webhook receiver on 127.0.0.1 that checks every request's signature:
    a bad one is answered 401, a body that is no JSON array 400, a good one 200
    and its batch kept."""

    secret: str = SECRET
    # Signed requests as they arrived: (raw body, signature header).
    accepted: list[tuple[bytes, str]] = field(default_factory=list)
    refused: int = 0
    malformed: int = 0

    @property
    def url(self) -> str:
        """Where the entry posts."""
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received, in order (the start probe's ``[]`` adds none)."""
        return [event for body, _ in self.accepted for event in json.loads(body)]

    def routes(self, app: web.Application) -> None:
        """The webhook's one path."""
        app.router.add_post("/hook", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(self.secret, request.headers.get(SIGNATURE, ""), body):
            self.refused += 1
            return web.Response(status=401, text="bad signature")
        try:
            if not isinstance(json.loads(body), list):
                raise ValueError("not an array")
        except ValueError:
            self.malformed += 1
            return web.Response(status=400, text="expected a JSON array")
        self.accepted.append((body, request.headers[SIGNATURE]))
        return web.Response(status=200)


@pytest.fixture
async def receiver(socket_enabled: None) -> AsyncIterator[Receiver]:
    """A running webhook receiver, stopped after the test."""
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _setup(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, url: str, **options: Any
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="home",
        data=fake_influxdb.v3_entry_data(),
        options={"webhook_url": url, "webhook_secret": SECRET, **options},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    return entry


def _fire(hass: HomeAssistant, start: int, count: int) -> None:
    for number in range(start, start + count):
        hass.states.async_set(f"sensor.outage_{number}", str(number))


async def test_webhook_receives_signed_batches_of_enriched_events(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, receiver: Receiver
) -> None:
    """Three state changes reach the receiver once each, as documented enriched
    events (with the area, device and labels of a registered entity), in
    requests whose signatures verify; the same check refuses a body changed by
    one byte under its original signature."""
    owner = MockConfigEntry(domain="test")
    owner.add_to_hass(hass)
    kitchen = ar.async_get(hass).async_create("Kitchen")
    climate = lr.async_get(hass).async_create("Climate")
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=owner.entry_id,
        identifiers={("test", "thermometer")},
        name="Thermometer",
        manufacturer="Acme",
        model="T1",
    )
    dr.async_get(hass).async_update_device(device.id, area_id=kitchen.id)
    registered = er.async_get(hass).async_get_or_create(
        "sensor", "test", "kitchen", device_id=device.id, suggested_object_id="kitchen"
    )
    er.async_get(hass).async_update_entity(
        registered.entity_id, labels={climate.label_id}
    )
    entry = await _setup(hass, fake_influxdb, receiver.url)

    hass.states.async_set(
        registered.entity_id,
        "21.5",
        {"unit_of_measurement": "°C", "friendly_name": "Kitchen", "battery": 90},
    )
    hass.states.async_set("switch.lamp", "on")
    hass.states.async_set("sensor.mood", "calm")
    await hass.async_block_till_done()
    assert await entry.runtime_data.webhook.async_flush()

    events = {event["entity_id"]: event for event in receiver.events}
    assert Counter(event["entity_id"] for event in receiver.events) == {
        registered.entity_id: 1,
        "switch.lamp": 1,
        "sensor.mood": 1,
    }
    for entity_id, event in events.items():
        state = hass.states.get(entity_id)
        assert state is not None
        assert event["time"].endswith("Z")
        assert datetime.fromisoformat(event["time"]) == state.last_updated
        assert event["event_type"] == "state_changed"
        assert event["domain"] == state.domain
        assert event["state"] == state.state
        assert event["context_id"] == state.context.id
    kitchen_event = events[registered.entity_id]
    assert kitchen_event["value"] == 21.5
    assert kitchen_event["friendly_name"] == "Kitchen"
    assert kitchen_event["attributes"] == {"battery": 90}
    assert kitchen_event["unit"] == "°C"
    assert kitchen_event["area"] == "Kitchen"
    assert kitchen_event["device"] == "Thermometer"
    assert kitchen_event["device_id"] == device.id
    assert kitchen_event["manufacturer"] == "Acme"
    assert kitchen_event["model"] == "T1"
    assert kitchen_event["integration"] == "test"
    assert kitchen_event["labels"] == ["Climate"]
    assert "value" not in events["sensor.mood"]
    assert events["switch.lamp"]["labels"] == []
    assert "area" not in events["switch.lamp"]
    assert (receiver.refused, receiver.malformed) == (0, 0)
    assert all(verified(SECRET, header, body) for body, header in receiver.accepted)
    assert len(fake_influxdb.points["home"]) == 3

    body, header = next((b, h) for b, h in receiver.accepted if b"21.5" in b)
    tampered = body.replace(b"21.5", b"29.5")
    assert len(tampered) == len(body)
    assert not verified(SECRET, header, tampered)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            receiver.url,
            data=tampered,
            headers={SIGNATURE: header, "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 401
    assert receiver.refused == 1


async def test_webhook_outage_and_reload_lose_nothing(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    receiver: Receiver,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The receiver goes away for 300 state changes, retries, a reload and 200
    more: InfluxDB gets every point meanwhile, and once the receiver is back
    every event arrives, none twice."""
    entry = await _setup(hass, fake_influxdb, receiver.url, batch_size=50)
    assert await entry.runtime_data.webhook.async_flush()
    await receiver.stop()

    _fire(hass, 0, 300)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    assert len(fake_influxdb.points["home"]) == 300
    webhook, stats = entry.runtime_data.webhook, entry.runtime_data.webhook_stats
    assert not await webhook.async_flush()
    for _ in range(3):  # the retry timer comes, finds it still down, backs off
        errors = stats.write_errors
        freezer.tick(BACKOFF_MAX)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert not await webhook.async_flush()
        assert stats.write_errors > errors
    assert webhook.spool.points == 300

    assert await hass.config_entries.async_reload(entry.entry_id)
    _fire(hass, 300, 200)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    assert len(fake_influxdb.points["home"]) == 500
    webhook, stats = entry.runtime_data.webhook, entry.runtime_data.webhook_stats
    assert not await webhook.async_flush()
    assert webhook.spool.points == 500

    await receiver.start()
    freezer.tick(BACKOFF_MAX + 1)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert not webhook.backing_off
    assert await webhook.async_flush()

    received = Counter(
        (event["entity_id"], event["state"]) for event in receiver.events
    )
    assert set(received) == {(f"sensor.outage_{n}", str(n)) for n in range(500)}
    assert max(received.values()) == 1
    assert webhook.spool.points == 0
    assert stats.dropped_points == 0
    assert (receiver.refused, receiver.malformed) == (0, 0)


async def test_webhook_never_gets_locations_or_clear_user_names(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, receiver: Receiver
) -> None:
    """A phone's position (state attributes and nested event data) never reaches
    the webhook; with ``pseudonymize_users`` the user who made a change shows
    as a stable ``user_<hex>``, never by name."""
    alice = await hass.auth.async_create_user("Alice Example")
    by_alice = Context(user_id=alice.id)
    position = {"latitude": 52.373169, "longitude": 4.892431, "gps_accuracy": 12}
    entry = await _setup(
        hass,
        fake_influxdb,
        receiver.url,
        event_types=["state_changed", "phone_moved"],
    )

    async def _move_phone(state: str) -> list[bytes]:
        before = len(receiver.accepted)
        hass.states.async_set(
            "device_tracker.alice_phone",
            state,
            {**position, "altitude": 3.5, "battery_level": 80},
            context=by_alice,
        )
        hass.bus.async_fire(
            "phone_moved",
            {
                "entity_id": "device_tracker.alice_phone",
                "gps": [52.373169, 4.892431],
                "fix": {"lat": 52.373169, "lon": 4.892431, "source": "satellite"},
            },
            context=by_alice,
        )
        await hass.async_block_till_done()
        assert await entry.runtime_data.webhook.async_flush()
        return [body for body, _ in receiver.accepted[before:]]

    bodies = await _move_phone("not_home")
    for body in bodies:
        for text in (b"latitude", b"longitude", b"gps", b"52.373169", b"4.892431"):
            assert text not in body
    moved = [event for body in bodies for event in json.loads(body)]
    assert [event["event_type"] for event in moved] == ["state_changed", "phone_moved"]
    assert moved[0]["attributes"] == {"battery_level": 80}
    assert moved[1]["data"] == {
        "entity_id": "device_tracker.alice_phone",
        "fix": {"source": "satellite"},
    }
    assert {event["user"] for event in moved} == {"Alice Example"}

    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "pseudonymize_users": True}
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    bodies = await _move_phone("home")
    assert bodies
    for body in bodies:
        assert b"Alice" not in body
        assert b"latitude" not in body
    users = {event["user"] for body in bodies for event in json.loads(body)}
    assert len(users) == 1
    assert re.fullmatch(r"user_[0-9a-f]{16}", users.pop())


async def test_refused_signature_pauses_the_webhook_and_raises_a_repair(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, receiver: Receiver
) -> None:
    """A receiver that refuses our signature (its secret changed): the webhook
    stops sending and raises its repair, no reauth starts, its events stay
    spooled while InfluxDB gets every point; with the right secret in the
    options every held event is delivered and the repair goes."""
    receiver.secret = "rotated-secret"
    entry = await _setup(hass, fake_influxdb, receiver.url)
    _fire(hass, 0, 20)
    await hass.async_block_till_done()
    webhook = entry.runtime_data.webhook
    assert not await webhook.async_flush()
    await hass.async_block_till_done()

    assert webhook.paused
    registry = ir.async_get(hass)
    assert registry.async_get_issue(DOMAIN, f"webhook_auth_failed_{entry.entry_id}")
    assert registry.async_get_issue(DOMAIN, f"auth_failed_{entry.entry_id}") is None
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    refused = receiver.refused
    _fire(hass, 20, 10)
    await hass.async_block_till_done()
    assert not await webhook.async_flush()
    assert receiver.refused == refused  # no hammering while refused
    assert receiver.accepted == []
    assert webhook.spool.points == 30
    assert entry.runtime_data.webhook_stats.dropped_points == 0
    assert await entry.runtime_data.pipeline.async_flush()
    assert len(fake_influxdb.points["home"]) == 30

    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "webhook_secret": "rotated-secret"}
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    assert await entry.runtime_data.webhook.async_flush()
    assert sorted(int(event["state"]) for event in receiver.events) == list(range(30))
    assert (
        registry.async_get_issue(DOMAIN, f"webhook_auth_failed_{entry.entry_id}")
        is None
    )

"""Health entities: what they show through an outage of the real InfluxDB, their
contract (unique ids, device), and counts that survive reloads and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import closing
import sqlite3
import time
from typing import Any
from unittest.mock import PropertyMock, patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    Platform,
)
from homeassistant.core import Event, HomeAssistant, State, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.syrupy import (
    HomeAssistantSnapshotExtension,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.ha_ingestor import spool_path
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.coordinator import (
    REFRESH_COOLDOWN,
    UPDATE_INTERVAL,
)
from custom_components.ha_ingestor.health import DROP_DAMAGED, DROP_SPOOL_FULL
from custom_components.ha_ingestor.spool import Spool

from .servers import InfluxDB1Server, free_port

# Only for the snapshot: the minimum Home Assistant's harness shares one config
# directory between tests, where the spool of a fixed entry id would live on.
SNAPSHOT_ENTRY_ID = "01JHAINGESTORHEALTH0000000"
TEST_EVENT = "ha_ingestor_test"
# The README's advice: the entry's own entities are not recorded.
OWN_ENTITIES = ("sensor.home_*", "binary_sensor.home_*")


@pytest.fixture
def platforms() -> list[Platform]:
    """The platforms the entry sets up (here: all of them)."""
    return [Platform.BINARY_SENSOR, Platform.SENSOR]


@pytest.fixture(autouse=True)
def _set_up_platforms(platforms: list[Platform]) -> Iterator[None]:
    with patch("custom_components.ha_ingestor.PLATFORMS", platforms):
        yield


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Registry entries and states without their random ids and times."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Entities disabled by default are created enabled."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


def _entry(
    server: InfluxDB1Server,
    entry_id: str | None = None,
    *,
    url: str | None = None,
    **options: Any,
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title="home",
        unique_id=f"{server.url}|home",
        data=server.entry_data() | {"url": url or server.url},
        options=options,
    )


async def _set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()  # after the probe


async def _next_refresh(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Move time to the coordinator's next refresh and let it finish (it runs as
    a background task, which block_till_done leaves alone)."""
    freezer.tick(UPDATE_INTERVAL)
    async_fire_time_changed(hass)
    refreshes = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(f"{DOMAIN} health")
    ]
    if refreshes:
        await asyncio.wait(refreshes)
    await hass.async_block_till_done()


def _entity_id(hass: HomeAssistant, key: str) -> str:
    domain = Platform.BINARY_SENSOR if key == "connected" else Platform.SENSOR
    [entry] = hass.config_entries.async_entries(DOMAIN)
    entity_id = er.async_get(hass).async_get_entity_id(
        domain, DOMAIN, f"{entry.entry_id}_{key}"
    )
    assert entity_id is not None, key
    return entity_id


def _state(hass: HomeAssistant, key: str) -> State:
    state = hass.states.get(_entity_id(hass, key))
    assert state is not None, key
    return state


def _number(hass: HomeAssistant, key: str) -> float:
    return float(_state(hass, key).state)


def _fire(hass: HomeAssistant, start: int, count: int) -> None:
    for number in range(start, start + count):
        hass.states.async_set(f"sensor.health_{number}", str(number))


async def test_outage_shows_in_the_entities_and_ends_with_the_spool_drained(
    hass: HomeAssistant,
    private_influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
    entity_registry_enabled_by_default: None,
) -> None:
    """Counts follow the events exactly; with InfluxDB stopped, Connected turns
    off, points pile up in memory and then in the spool, and the outage repair
    shows after its threshold; with InfluxDB back, the flush action drains the
    spool and the entities say so."""
    server = private_influxdb_v1
    entry = _entry(server, exclude_entity_globs=OWN_ENTITIES)
    # Every state change counts as received, the entities' own too.
    received = async_capture_events(hass, EVENT_STATE_CHANGED)
    await _set_up(hass, entry)
    _fire(hass, 0, 25)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    seen = len(received)
    await _next_refresh(hass, freezer)
    assert _number(hass, "events_received") == seen
    assert _number(hass, "points_written") == 25
    assert server.rows("home", "SELECT count(value) FROM sensor")[0]["count"] == 25
    assert _state(hass, "connected").state == STATE_ON
    assert _number(hass, "write_errors") == 0
    assert _number(hass, "queue_depth") == 0
    assert _number(hass, "oldest_unsent") == 0

    server.stop()
    _fire(hass, 25, 10)
    await _next_refresh(hass, freezer)  # the refresh comes before the write
    assert _number(hass, "queue_depth") == 10
    assert _number(hass, "oldest_unsent") == UPDATE_INTERVAL.total_seconds()
    assert _state(hass, "connected").state == STATE_ON
    assert not await entry.runtime_data.pipeline.async_flush()
    await _next_refresh(hass, freezer)
    assert _state(hass, "connected").state == STATE_OFF
    assert _number(hass, "queue_depth") == 0
    assert _number(hass, "spool_points") == 10
    assert _number(hass, "spool_size") > 0
    assert _number(hass, "oldest_unsent") == 2 * UPDATE_INTERVAL.total_seconds()
    assert _number(hass, "write_errors") >= 1
    assert _state(hass, "points_written").state != STATE_UNAVAILABLE

    issue_id = f"influxdb_unreachable_{entry.entry_id}"
    raised = asyncio.Event()

    @callback
    def _on_issue(event: Event[Any]) -> None:
        if event.data["issue_id"] == issue_id and event.data["action"] == "create":
            raised.set()

    hass.bus.async_listen(ir.EVENT_REPAIRS_ISSUE_REGISTRY_UPDATED, _on_issue)
    freezer.tick(14 * 60)  # the default threshold is 15 minutes
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    freezer.tick(60)
    async_fire_time_changed(hass)
    await raised.wait()  # the consumer raises it on its next wake

    server.start()
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    await _next_refresh(hass, freezer)
    assert _state(hass, "connected").state == STATE_ON
    assert _number(hass, "spool_points") == 0
    assert _number(hass, "oldest_unsent") == 0
    assert _number(hass, "points_written") == 35
    assert server.rows("home", "SELECT count(value) FROM sensor")[0]["count"] == 35

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert _state(hass, "points_written").state == STATE_UNAVAILABLE


async def test_a_change_that_matters_refreshes_at_most_every_cooldown(
    hass: HomeAssistant,
    private_influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Told that something changed, the coordinator refreshes at once, and again
    only once the cooldown is over, however often it is told."""
    server = private_influxdb_v1
    entry = _entry(server)
    await _set_up(hass, entry)
    coordinator = entry.runtime_data.coordinator
    await _next_refresh(hass, freezer)
    assert _state(hass, "connected").state == STATE_ON

    server.stop()
    assert not await entry.runtime_data.pipeline.async_flush()
    coordinator.async_pipeline_changed()
    await hass.async_block_till_done()
    assert _state(hass, "connected").state == STATE_OFF

    server.start()
    assert await entry.runtime_data.pipeline.async_flush(force=True)
    coordinator.async_pipeline_changed()
    coordinator.async_pipeline_changed()
    await hass.async_block_till_done()
    assert _state(hass, "connected").state == STATE_OFF  # cooling down
    freezer.tick(REFRESH_COOLDOWN)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _state(hass, "connected").state == STATE_ON


async def test_a_full_spool_counts_the_drop_and_names_its_reason(
    hass: HomeAssistant,
    influxdb_v1_server: InfluxDB1Server,
    socket_enabled: None,
    freezer: FrozenDateTimeFactory,
) -> None:
    """With nothing listening and a spool of 10 kB, the oldest points are dropped:
    Points dropped counts them and says why."""
    entry = _entry(
        influxdb_v1_server,
        url=f"http://127.0.0.1:{free_port()}",
        max_spool_mb=0.01,
        exclude_entity_globs=OWN_ENTITIES,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    pipeline = entry.runtime_data.pipeline
    for start in range(0, 2000, 100):
        _fire(hass, start, 100)
        await hass.async_block_till_done()
        assert not await pipeline.async_flush(force=True)
    await hass.async_block_till_done()
    await _next_refresh(hass, freezer)
    dropped = _state(hass, "points_dropped")
    assert float(dropped.state) == entry.runtime_data.stats.dropped_points > 0
    assert dropped.attributes["last_reason"] == DROP_SPOOL_FULL
    assert _number(hass, "spool_points") + float(dropped.state) == 2000


async def test_the_spool_read_by_a_refresh_counts_damage_and_tolerates_failure(
    hass: HomeAssistant,
    influxdb_v1_server: InfluxDB1Server,
    socket_enabled: None,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A refresh that finds the oldest spooled batch damaged counts it as the
    pipeline would and takes the age from the next one; a spool that cannot be
    read leaves the entities available."""
    entry = _entry(
        influxdb_v1_server,
        url=f"http://127.0.0.1:{free_port()}",
        event_types=[TEST_EVENT],
    )
    entry.add_to_hass(hass)
    path = spool_path(hass, entry)
    spool = Spool(path, 10_000_000)
    first_ns = 1_700_000_000_000_000_000
    await hass.async_add_executor_job(spool.open)
    for batch in range(2):
        await hass.async_add_executor_job(
            spool.append,
            [
                f"sensor,entity_id=sensor.old value={n} {first_ns + 100 * batch + n}"
                for n in range(100)
            ],
        )
    await hass.async_add_executor_job(spool.close)

    def _damage() -> None:
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE batches SET body = X'00FF00FF00FF' WHERE id = 1")

    await hass.async_add_executor_job(_damage)

    assert await hass.config_entries.async_setup(entry.entry_id)
    await _next_refresh(hass, freezer)
    dropped = _state(hass, "points_dropped")
    assert dropped.state == "100"
    assert dropped.attributes["last_reason"] == DROP_DAMAGED
    assert _number(hass, "spool_points") == 100
    age = (time.time_ns() - (first_ns + 100)) / 1e9
    assert _number(hass, "oldest_unsent") == round(age, 1)

    pipeline_spool = entry.runtime_data.pipeline.spool
    await hass.async_add_executor_job(pipeline_spool.close)
    await _next_refresh(hass, freezer)
    assert _number(hass, "oldest_unsent") == 0
    assert _state(hass, "points_dropped").state == "100"
    await hass.async_add_executor_job(pipeline_spool.open)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_counts_survive_a_reload_including_its_last_write(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Counts go on where they were after a reload, and include what the
    unload wrote last."""
    entry = _entry(influxdb_v1, event_types=[TEST_EVENT])
    await _set_up(hass, entry)
    for _ in range(5):
        hass.bus.async_fire(TEST_EVENT)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    await _next_refresh(hass, freezer)
    assert _number(hass, "events_received") == 5
    assert _number(hass, "points_written") == 5

    for _ in range(3):  # written by the unload, after the last refresh
        hass.bus.async_fire(TEST_EVENT)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert _number(hass, "events_received") == 8
    assert _number(hass, "points_written") == 8

    hass.bus.async_fire(TEST_EVENT)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    await _next_refresh(hass, freezer)
    assert _number(hass, "events_received") == 9
    assert _number(hass, "points_written") == 9
    assert _number(hass, "write_errors") == 0


async def test_counts_survive_a_restart(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """After a restart each counter goes on from its restored count (a restored
    state that is no number counts as 0), and the last drop reason is kept."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("sensor.home_events_received", "1000"),
                {"native_value": 1000, "native_unit_of_measurement": "events"},
            ),
            (
                State("sensor.home_points_written", "unknown"),
                {"native_value": None, "native_unit_of_measurement": "points"},
            ),
            (
                State(
                    "sensor.home_points_dropped",
                    "7",
                    {"last_reason": DROP_SPOOL_FULL},
                ),
                {"native_value": 7, "native_unit_of_measurement": "points"},
            ),
        ],
    )
    entry = _entry(influxdb_v1, event_types=[TEST_EVENT])
    await _set_up(hass, entry)
    for _ in range(5):
        hass.bus.async_fire(TEST_EVENT)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    await _next_refresh(hass, freezer)
    assert _number(hass, "events_received") == 1005
    assert _number(hass, "points_written") == 5
    dropped = _state(hass, "points_dropped")
    assert dropped.state == "7"
    assert dropped.attributes["last_reason"] == DROP_SPOOL_FULL


async def test_one_service_device_per_entry_without_credentials(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The entry's entities belong to one service device named after it, whose
    link is the server's URL without credentials."""
    url = influxdb_v1.url.replace("://", "://admin:secret@", 1)
    entry = _entry(influxdb_v1, url=url)
    await _set_up(hass, entry)
    [device] = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert device.identifiers == {(DOMAIN, entry.entry_id)}
    assert device.entry_type is dr.DeviceEntryType.SERVICE
    assert device.name == "home"
    assert device.manufacturer == "HA Ingestor"
    assert device.configuration_url == influxdb_v1.url
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert {entity.device_id for entity in entities} == {device.id}


@pytest.mark.current_ha_only
@pytest.mark.parametrize("platforms", [[Platform.SENSOR], [Platform.BINARY_SENSOR]])
async def test_entities_match_the_contract(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
    entity_registry_enabled_by_default: None,
    snapshot: SnapshotAssertion,
) -> None:
    """Unique ids, names, units, categories and states after one written event."""
    freezer.move_to("2026-01-01 12:00:00+00:00")
    entry = _entry(influxdb_v1, SNAPSHOT_ENTRY_ID, event_types=[TEST_EVENT])
    await _set_up(hass, entry)
    hass.bus.async_fire(TEST_EVENT)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    await _next_refresh(hass, freezer)
    await snapshot_platform(hass, er.async_get(hass), snapshot, SNAPSHOT_ENTRY_ID)


async def test_sink_entities_show_their_sink_and_go_when_it_is_turned_off(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server, freezer: FrozenDateTimeFactory
) -> None:
    """With MQTT republish on but no MQTT set up, and a webhook nobody listens
    on, both show disconnected; republished events are counted as dropped and the
    webhook's wait in memory or its spool, none dropped. Turning both off removes
    their entities."""
    entry = _entry(
        influxdb_v1,
        event_types=[TEST_EVENT],
        republish=True,
        webhook_url=f"http://127.0.0.1:{free_port()}/hook",
        webhook_secret="s3cret",
    )
    await _set_up(hass, entry)
    for _ in range(5):
        hass.bus.async_fire(TEST_EVENT)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    await _next_refresh(hass, freezer)
    states = {
        key: hass.states.get(
            er.async_get(hass).async_get_entity_id(
                platform, DOMAIN, f"{entry.entry_id}_{key}"
            )
            or ""
        )
        for platform, key in (
            (Platform.BINARY_SENSOR, "webhook_connected"),
            (Platform.BINARY_SENSOR, "republish_connected"),
            (Platform.SENSOR, "webhook_points_sent"),
            (Platform.SENSOR, "webhook_points_dropped"),
            (Platform.SENSOR, "republish_sent"),
            (Platform.SENSOR, "republish_dropped"),
        )
    }
    assert {key: state.state if state else None for key, state in states.items()} == {
        "webhook_connected": STATE_OFF,
        "republish_connected": STATE_OFF,
        "webhook_points_sent": "0",
        "webhook_points_dropped": "0",
        "republish_sent": "0",
        "republish_dropped": "5",
    }
    webhook = entry.runtime_data.webhook
    assert webhook is not None
    assert webhook.held + webhook.spool.points == 5
    assert _state(hass, "points_written").state == "5"

    hass.config_entries.async_update_entry(
        entry, options=entry.options | {"republish": False, "webhook_url": None}
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    registry = er.async_get(hass)
    keys = {
        entity.unique_id.removeprefix(f"{entry.entry_id}_")
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
    }
    assert not {key for key in keys if "webhook" in key or "republish" in key}
    assert "points_written" in keys

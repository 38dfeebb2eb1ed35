"""Nothing lost: outages, restarts, crashes, refused credentials, refused lines,
a full spool and a slow server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant import loader
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_test_home_assistant,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ha_ingestor import pipeline as pipeline_module, spool_path
from custom_components.ha_ingestor.const import BACKOFF_MAX, DOMAIN
from custom_components.ha_ingestor.spool import Spool

from .fake_influxdb import FakeInfluxDB
from .proxy import FaultyProxy
from .servers import InfluxDB1Server


def _v1_entry(
    server: InfluxDB1Server, entry_id: str | None = None, **options: Any
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title="home",
        unique_id=f"{server.url}|home",
        data=server.entry_data(),
        options=options,
    )


def _fire(hass: HomeAssistant, start: int, count: int, entities: int = 10) -> None:
    for number in range(start, start + count):
        hass.states.async_set(f"sensor.outage_{number % entities}", str(number))


def _counts(server: InfluxDB1Server) -> dict[str, int]:
    return {
        row["entity_id"]: row["count"]
        for row in server.rows(
            "home", "SELECT count(value) FROM sensor GROUP BY entity_id"
        )
    }


async def test_outage_and_restart_lose_nothing(
    hass: HomeAssistant, private_influxdb_v1: InfluxDB1Server
) -> None:
    """Events fired before, during and after an outage that spans an unload and a
    new setup all arrive exactly once when the server is back."""
    server = private_influxdb_v1
    entry = _v1_entry(server, batch_size=50)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    _fire(hass, 0, 200)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    server.stop()
    _fire(hass, 200, 300)
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    _fire(hass, 500, 100)
    await hass.async_block_till_done()

    # What HA Ingestor sees of a Home Assistant restart, with the server down.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.pipeline.spool.points == 400
    _fire(hass, 600, 200)
    await hass.async_block_till_done()

    server.start()
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    assert _counts(server) == {f"sensor.outage_{n}": 80 for n in range(10)}
    assert entry.runtime_data.pipeline.spool.points == 0
    assert entry.runtime_data.stats.dropped_points == 0


CRASHING_WRITER = """
import base64, os, signal, sys, urllib.request
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from custom_components.ha_ingestor.spool import Spool
spool = Spool(Path(sys.argv[2]), 10_000_000)
spool.open()
lines = [f"sensor,entity_id=sensor.crash value={n} {1_700_000_000_000_000_000 + n}"
         for n in range(100)]
spool.append(lines)
[batch] = spool.peek().batches
auth = base64.b64encode(sys.argv[4].encode()).decode()
request = urllib.request.Request(
    sys.argv[3] + "/write?db=home&precision=ns",
    data="\\n".join(batch.lines).encode(),
    headers={"Authorization": "Basic " + auth},
)
assert urllib.request.urlopen(request).status == 204
os.kill(os.getpid(), signal.SIGKILL)  # killed between the write and its ack
"""


async def test_crash_between_write_and_ack_replays_without_duplicates(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """A process killed after writing a spooled batch but before acknowledging it
    leaves the batch spooled; the replay overwrites the same points."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    path = spool_path(hass, entry)
    crashed = await hass.async_add_executor_job(
        lambda: subprocess.run(
            [
                sys.executable,
                "-c",
                CRASHING_WRITER,
                str(Path(__file__).parent.parent),
                str(path),
                influxdb_v1.url,
                f"{influxdb_v1.admin_user}:{influxdb_v1.admin_password}",
            ],
            check=False,
        )
    )
    assert crashed.returncode == -9
    assert (
        influxdb_v1.rows("home", "SELECT count(value) FROM sensor")[0]["count"] == 100
    )

    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.runtime_data.pipeline.spool.points == 100
    assert await entry.runtime_data.pipeline.async_flush()
    assert entry.runtime_data.stats.points_replayed == 100
    assert (
        influxdb_v1.rows("home", "SELECT count(value) FROM sensor")[0]["count"] == 100
    )


async def test_refused_token_pauses_reauths_and_then_delivers_everything(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A revoked token stops writing, starts reauth and raises a repair while
    capture goes on; the new token delivers every spooled point. The token never
    shows in logs, repairs or diagnostics."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="home",
        unique_id=f"{fake_influxdb.url}|home",
        data=fake_influxdb.v2_entry_data(),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    fake_influxdb.tokens = {"new-token"}
    _fire(hass, 0, 30)
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    await hass.async_block_till_done()

    assert entry.runtime_data.pipeline.paused
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"auth_failed_{entry.entry_id}")
    assert issue is not None
    requests = fake_influxdb.requests
    _fire(hass, 30, 20)
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    assert fake_influxdb.requests == requests  # no hammering while refused
    assert entry.runtime_data.pipeline.spool.points == 50

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    for text in (caplog.text, str(diagnostics), str(issue.translation_placeholders)):
        assert "good-token" not in text
        assert "new-token" not in text

    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {"token": "new-token"}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    assert len(fake_influxdb.points["home"]) == 50
    assert (
        ir.async_get(hass).async_get_issue(DOMAIN, f"auth_failed_{entry.entry_id}")
        is None
    )
    assert "new-token" not in caplog.text


async def test_type_conflict_loses_only_the_conflicting_line(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    hass_client: ClientSessionGenerator,
) -> None:
    """One line that conflicts with a field type already in InfluxDB goes to the
    dead letters (shown in diagnostics); every other line of its batch lands."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    # Someone else wrote "battery" as text into this measurement (and shard).
    await entry.runtime_data.writer.async_write(
        f'sensor,entity_id=sensor.other battery="low" {time.time_ns()}'.encode()
    )
    for number in range(20):
        attributes = {"battery": 50} if number == 7 else {}
        hass.states.async_set(f"sensor.part_{number}", str(number), attributes)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    rows = influxdb_v1.rows(
        "home", "SELECT count(value) FROM sensor WHERE entity_id =~ /part/"
    )
    assert rows[0]["count"] == 19
    assert entry.runtime_data.stats.rejected_points == 1
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    [letter] = diagnostics["spool"]["oldest_dead_letters"]
    assert "sensor.part_7" in letter["line"]
    assert "field type conflict" in letter["error"]

    # Retrying while the conflict remains puts the line back among the dead.
    response = await hass.services.async_call(
        DOMAIN, "retry_dead_letters", blocking=True, return_response=True
    )
    assert response == {"retried": {entry.title: 1}}
    assert entry.runtime_data.pipeline.spool.dead_letter_count == 1
    response = await hass.services.async_call(
        DOMAIN, "purge_dead_letters", blocking=True, return_response=True
    )
    assert response == {"purged": {entry.title: 1}}
    assert entry.runtime_data.pipeline.spool.dead_letter_count == 0


async def test_full_spool_drops_oldest_counts_exactly_and_raises_a_repair(
    hass: HomeAssistant, private_influxdb_v1: InfluxDB1Server
) -> None:
    """With a tiny spool, the oldest data goes; the drop counter equals exactly
    what is missing from the database."""
    server = private_influxdb_v1
    entry = _v1_entry(server, batch_size=20, max_spool_mb=0.01)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    server.stop()
    fired = 0
    for _ in range(60):
        _fire(hass, fired, 20, entities=1000)
        fired += 20
        await hass.async_block_till_done()
        await entry.runtime_data.pipeline.async_flush()
    stats = entry.runtime_data.stats
    assert stats.dropped_points > 0
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"spool_full_{entry.entry_id}")
    assert issue is not None

    server.start()
    assert await entry.runtime_data.pipeline.async_flush(force=True)
    stored = sum(_counts(server).values())
    assert stored + stats.dropped_points == fired
    # The oldest went first: the newest point of all is there.
    assert server.rows(
        "home",
        "SELECT value FROM sensor WHERE entity_id = "
        f"'sensor.outage_{(fired - 1) % 1000}'",
    )


async def test_slow_server_never_stalls_home_assistant(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A server that takes 30 s per request: writes time out, data is spooled, and
    the event loop keeps its p99 lag under 50 ms."""
    fake_influxdb.delay = 30
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="slow",
        data=fake_influxdb.v3_entry_data(),
        options={"flush_interval": 0.2, "batch_size": 100},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)  # probe times out
    lags: list[float] = []
    deadline = time.monotonic() + 12
    number = 0
    while time.monotonic() < deadline:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - before - 0.01)
        _fire(hass, number, 10)
        number += 10
    p99 = statistics.quantiles(lags, n=100)[98]
    assert p99 < 0.05
    assert entry.runtime_data.stats.write_errors >= 1
    assert (
        entry.runtime_data.pipeline.spool.points + entry.runtime_data.pipeline.queued
        == number
    )
    fake_influxdb.delay = 0
    assert await entry.runtime_data.pipeline.async_flush(force=True)
    assert len(fake_influxdb.points["home"]) == number


async def test_reload_during_a_long_replay_is_bounded_and_keeps_the_rest(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reloading while a slow server replays a large spool does not wait for the
    whole replay: unload gives up at its deadline, the unreplayed batches stay
    spooled, and the reloaded entry goes on with them."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="slow-replay", data=fake_influxdb.v3_entry_data()
    )
    entry.add_to_hass(hass)
    spool = Spool(spool_path(hass, entry), 10_000_000)
    await hass.async_add_executor_job(spool.open)
    for batch in range(40):
        lines = [
            f"sensor,entity_id=sensor.replay value={n} {1_700_000_000 + batch}{n:09d}"
            for n in range(10)
        ]
        await hass.async_add_executor_job(spool.append, lines)
    await hass.async_add_executor_job(spool.close)
    monkeypatch.setattr(pipeline_module, "WRITE_DEADLINE", 0.5)
    fake_influxdb.delay = 1

    assert await hass.config_entries.async_setup(entry.entry_id)
    assert await hass.config_entries.async_reload(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    pipeline = entry.runtime_data.pipeline
    assert 0 < pipeline.spool.points <= 400
    fake_influxdb.delay = 0
    assert await pipeline.async_flush()
    assert len(fake_influxdb.points["home"]) == 400
    assert entry.runtime_data.stats.dropped_points == 0


async def _wait_for(hass: HomeAssistant, condition: Callable[[], bool]) -> None:
    """Let the event loop and the executor run until ``condition`` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition never held")


async def test_memory_stays_bounded_while_the_server_hangs(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A server that holds every request: the consumer is stuck, yet memory never
    holds more than ``max_memory_points`` plus a batch; the rest moves to the
    spool, and everything lands once the server answers."""
    fake_influxdb.delay = 60
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="hanging",
        data=fake_influxdb.v3_entry_data(),
        options={"max_memory_points": 100, "batch_size": 50},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    pipeline = entry.runtime_data.pipeline
    for chunk in range(40):
        _fire(hass, chunk * 50, 50, entities=1000)
        assert pipeline.held <= 150
        await _wait_for(hass, lambda: pipeline.held <= 100 and not pipeline.moving)
    assert pipeline.spool.points + pipeline.held == 2000
    assert entry.runtime_data.stats.dropped_points == 0

    fake_influxdb.release()
    assert await pipeline.async_flush(force=True)
    assert len(fake_influxdb.points["home"]) == 2000


async def test_an_unexpected_error_never_ends_delivery(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug-like error inside a write (no server can produce one, so the writer
    is made to raise): the consumer logs it once with its traceback, counts it
    and goes on; the flush action reports it in Home Assistant's terms; no point
    is lost."""
    entry = _v1_entry(influxdb_v1, flush_interval=0.1, batch_size=10)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    writer = entry.runtime_data.writer
    real_write = writer.async_write

    async def _broken_write(body: bytes) -> None:
        raise ValueError("a bug in a library")

    monkeypatch.setattr(writer, "async_write", _broken_write)
    stats = entry.runtime_data.stats
    _fire(hass, 0, 20)
    await _wait_for(hass, lambda: stats.internal_errors >= 2)
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(DOMAIN, "flush", blocking=True)
    assert raised.value.translation_key == "write_failed"
    assert caplog.text.count("Unexpected error while delivering") == 1
    assert "Traceback" in caplog.text

    monkeypatch.setattr(writer, "async_write", real_write)
    _fire(hass, 20, 20)
    await _wait_for(
        hass,
        lambda: stats.points_written == 40 and not entry.runtime_data.pipeline.held,
    )
    assert sum(_counts(influxdb_v1).values()) == 40
    assert await hass.config_entries.async_unload(entry.entry_id)


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small file system: what a full SD card looks like to SQLite."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _noisy_states(hass: HomeAssistant, start: int, count: int) -> None:
    """State changes that compress badly, so a small disk really fills up."""
    noise = random.Random(start)
    for number in range(start, start + count):
        hass.states.async_set(
            f"sensor.disk_{number % 500}",
            str(number),
            {"noise": noise.random(), "other": noise.random()},
        )


async def test_full_disk_bounds_memory_and_counts_every_drop(
    hass: HomeAssistant,
    private_influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Spool on a 256 KB file system, server down, 20,000 state changes: no
    exception reaches Home Assistant, memory stays within its bound plus one
    batch, a repair says why; once space returns and the server is back, what
    is stored plus what was counted as dropped is exactly what was fired."""
    server = private_influxdb_v1
    entry = _v1_entry(server, batch_size=100, max_memory_points=1000)
    entry.add_to_hass(hass)
    spool_dir = spool_path(hass, entry).parent
    with _tmpfs(spool_dir, "256k"):
        server.stop()
        assert await hass.config_entries.async_setup(entry.entry_id)
        pipeline = entry.runtime_data.pipeline
        fired = 0
        while fired < 20_000:
            _noisy_states(hass, fired, 500)
            fired += 500
            assert pipeline.held <= 1000 + 100
            await hass.async_block_till_done()
            await pipeline.async_flush()
            assert pipeline.held <= 1000 + 100
        stats = entry.runtime_data.stats
        assert stats.dropped_by_reason.get("memory_full", 0) > 0
        registry = ir.async_get(hass)
        assert registry.async_get_issue(DOMAIN, f"spool_unavailable_{entry.entry_id}")
        assert registry.async_get_issue(DOMAIN, f"points_dropped_{entry.entry_id}")

        remount = ["mount", "-o", "remount,size=64m", str(spool_dir)]
        await hass.async_add_executor_job(partial(subprocess.run, remount, check=True))
        server.start()
        response = await hass.services.async_call(
            DOMAIN, "flush", blocking=True, return_response=True
        )
        assert response == {"written": {entry.title: True}}
        stored = server.rows("home", "SELECT count(state) FROM sensor")[0]["count"]
        assert stored + stats.dropped_points == fired
        assert stats.internal_errors == 0
        assert (
            registry.async_get_issue(DOMAIN, f"spool_unavailable_{entry.entry_id}")
            is None
        )
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert entry.state is ConfigEntryState.NOT_LOADED
    assert "Traceback" not in caplog.text


async def test_garbage_spool_file_is_moved_aside_and_capture_goes_on(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """A spool file that is not a database: the entry loads, a repair names the
    file it was moved to, and new state changes land."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    path = spool_path(hass, entry)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not SQLite, a power cut left it " * 100)

    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"spool_corrupt_{entry.entry_id}"
    )
    assert issue is not None
    moved = Path(issue.translation_placeholders["path"])
    garbage = await hass.async_add_executor_job(moved.read_bytes)
    assert garbage.startswith(b"this is not SQLite")
    _fire(hass, 0, 50)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    assert sum(_counts(influxdb_v1).values()) == 50

    # Once the user deleted the old file, the repair goes at the next start.
    await hass.async_add_executor_job(moved.unlink)
    assert await hass.config_entries.async_reload(entry.entry_id)
    assert (
        ir.async_get(hass).async_get_issue(DOMAIN, f"spool_corrupt_{entry.entry_id}")
        is None
    )


async def test_one_damaged_batch_is_counted_and_the_rest_is_replayed(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Five spooled batches, one with damaged bytes: the other four and new
    points land, the damaged one is counted as dropped, unload is clean."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    path = spool_path(hass, entry)
    spool = Spool(path, 10_000_000)
    spool.open()
    for batch in range(5):
        spool.append(
            [
                f"sensor,entity_id=sensor.old_{batch} value={n} "
                f"{1_700_000_000_000_000_000 + n}"
                for n in range(100)
            ]
        )
    spool.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE batches SET body = X'00FF00FF00FF' WHERE id = 3")
    db.close()

    assert await hass.config_entries.async_setup(entry.entry_id)
    _fire(hass, 0, 10)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    counts = {
        row["entity_id"]: row["count"]
        for row in influxdb_v1.rows(
            "home", "SELECT count(value) FROM sensor GROUP BY entity_id"
        )
    }
    assert counts == {
        **{f"sensor.old_{n}": 100 for n in (0, 1, 3, 4)},
        **{f"sensor.outage_{n}": 1 for n in range(10)},
    }
    stats = entry.runtime_data.stats
    assert stats.dropped_by_reason == {"damaged_spool_batch": 100}
    assert entry.runtime_data.pipeline.spool.points == 0
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_retry_after_of_a_day_is_capped_at_the_backoff_maximum(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server, freezer: FrozenDateTimeFactory
) -> None:
    """A proxy in front of InfluxDB answers one write with 503 and
    ``Retry-After: 86400``: writes resume after five minutes, not a day."""
    proxy = FaultyProxy(upstream=influxdb_v1.url)
    await proxy.start()
    try:
        entry = _v1_entry(influxdb_v1)
        entry.add_to_hass(hass)
        hass.config_entries.async_update_entry(
            entry, data={**entry.data, "url": proxy.url}
        )
        assert await hass.config_entries.async_setup(entry.entry_id)
        pipeline = entry.runtime_data.pipeline
        assert await pipeline.async_flush()  # the startup probe went through

        proxy.fail_next(503, {"Retry-After": "86400"}, b"overloaded")
        _fire(hass, 0, 10)
        await hass.async_block_till_done()
        assert not await pipeline.async_flush()
        freezer.tick(BACKOFF_MAX - 1)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert pipeline.backing_off
        assert not await pipeline.async_flush()  # still waiting: spooled

        freezer.tick(2)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert not pipeline.backing_off
        assert await pipeline.async_flush()
        assert sum(_counts(influxdb_v1).values()) == 10
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await proxy.stop()


async def test_home_assistant_stop_keeps_every_state_for_the_next_start(
    hass: HomeAssistant,
    private_influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Home Assistant stops with the server down and 20,000 points queued while
    other integrations set states during stop and final write; the next Home
    Assistant on the same config directory delivers all of them."""
    server = private_influxdb_v1
    server.stop()
    entry = _v1_entry(
        server, batch_size=100_000, flush_interval=3600, max_memory_points=100_000
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    _fire(hass, 0, 20_000, entities=1000)
    await hass.async_block_till_done()
    assert entry.runtime_data.pipeline.held == 20_000

    async def _on_stop(event: Event) -> None:
        for number in range(55):
            hass.states.async_set(f"sensor.stopping_{number}", "unavailable")
            await asyncio.sleep(0)

    @callback
    def _on_final_write(event: Event) -> None:
        for number in range(55):
            hass.states.async_set(f"sensor.final_{number}", "unavailable")

    hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, _on_stop)
    hass.bus.async_listen(EVENT_HOMEASSISTANT_FINAL_WRITE, _on_final_write)
    await hass.async_stop()
    assert entry.runtime_data.stats.dropped_points == 0
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert "Unable to remove unknown job listener" not in caplog.text

    server.start()
    async with async_test_home_assistant(config_dir=hass.config.config_dir) as again:
        again.data.pop(loader.DATA_CUSTOM_COMPONENTS)  # as enable_custom_integrations
        second = _v1_entry(server, entry.entry_id)
        second.add_to_hass(again)
        assert await again.config_entries.async_setup(second.entry_id)
        assert await second.runtime_data.pipeline.async_flush()
        stored = sum(
            row["count"]
            for measurement in ("sensor",)
            for row in server.rows(
                "home", f"SELECT count(state) FROM {measurement} GROUP BY entity_id"
            )
        )
        assert stored == 20_110
        assert await again.config_entries.async_unload(second.entry_id)
        await again.async_stop(force=True)


async def test_a_multi_line_text_survives_a_refused_spooled_batch(
    hass: HomeAssistant, private_influxdb_v1: InfluxDB1Server
) -> None:
    """A spooled batch holding a text with a line break (1.x stores it as is) and a
    line the server refuses: splitting the batch keeps the multi-line point whole,
    so only the refused line becomes a dead letter."""
    server = private_influxdb_v1
    entry = _v1_entry(server, attributes_include=["note", "battery"])
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    pipeline = entry.runtime_data.pipeline
    assert await pipeline.async_flush()
    await entry.runtime_data.writer.async_write(
        f'sensor,entity_id=sensor.other battery="low" {time.time_ns()}'.encode()
    )
    server.stop()
    hass.states.async_set("sensor.note", "1", {"note": "first line\nsecond line"})
    hass.states.async_set("sensor.conflict", "2", {"battery": 50})
    await hass.async_block_till_done()
    assert not await pipeline.async_flush()
    assert pipeline.spool.points == 2

    server.start()
    assert await pipeline.async_flush(force=True)
    [note] = server.rows(
        "home", "SELECT note_str FROM sensor WHERE entity_id = 'sensor.note'"
    )
    assert note["note_str"] == "first line\nsecond line"
    assert entry.runtime_data.stats.rejected_points == 1
    assert pipeline.spool.dead_letter_count == 1

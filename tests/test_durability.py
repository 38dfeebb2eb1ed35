"""Nothing lost: outages, restarts, crashes, refused credentials, refused lines,
a full spool and a slow server."""

from __future__ import annotations

import asyncio
from pathlib import Path
import statistics
import subprocess
import sys
import time
from typing import Any

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ha_ingestor import spool_path
from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server


def _v1_entry(server: InfluxDB1Server, **options: Any) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="home",
        unique_id=f"{server.url}|home",
        data={
            "api_version": "1",
            "url": server.url,
            "database": "home",
            "username": server.admin_user,
            "password": server.admin_password,
            "verify_ssl": True,
        },
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
[batch] = spool.peek()
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
    assert response == {"retried": {entry.entry_id: 1}}
    assert entry.runtime_data.pipeline.spool.dead_letter_count == 1
    response = await hass.services.async_call(
        DOMAIN, "purge_dead_letters", blocking=True, return_response=True
    )
    assert response == {"purged": {entry.entry_id: 1}}
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

"""One benchmark measurement in one fresh process: a real Home Assistant core (the
test harness's ``hass``) with neither integration, with the built-in ``influxdb``
integration, or with HA Ingestor, against a real InfluxDB 1.x (the ``v2`` mode: a
2.x entry against VictoriaMetrics; ``ingestor_webhook``: HA Ingestor with its
webhook sink on, posting to ``receiver.py`` in a process of its own). Prints one
JSON object. ``run.py`` runs these side by side and writes docs/benchmarks.md.

It needs nothing newer than commit 89a454b has (``tests/servers.py``, the
entry's ``writer`` and ``pipeline``), so a copy of it measures that checkout too:
the "before" of the 2.x row (docs/benchmarks.md, "2.x entry"). Or, without
copying it, ``--components CHECKOUT`` loads another checkout's
``custom_components`` (run.py's ``--before``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import Awaitable, Callable
import copy
import ctypes
import ctypes.util
from datetime import UTC, datetime
import gc
import json
import logging
import math
import os
from pathlib import Path
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, ClassVar
from unittest.mock import patch

import aiohttp
from aiohttp.resolver import AsyncResolver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from homeassistant import loader
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
    label_registry as lr,
)
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_test_home_assistant,
)

from tests.servers import InfluxDB1Server, VictoriaMetricsServer

ENTITIES = 1000
DOMAIN = "ha_ingestor"
DATABASE = "bench"
KINDS = ("baseline", "listener", "builtin", "ingestor", "ingestor_webhook")
WEBHOOK_SECRET = "bench-secret"


def _resolver() -> AsyncResolver:
    resolver = AsyncResolver()
    resolver.real_close = resolver.close  # type: ignore[attr-defined]  # the harness closes it so
    return resolver


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now (VmRSS), in MB: unlike the peak, it
    falls when memory goes back to the system."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build_home(hass: HomeAssistant) -> list[str]:
    """1,000 sensors with devices (behind a hub), areas on floors, and labels."""
    source = MockConfigEntry(domain="demo")
    source.add_to_hass(hass)
    devices, entities = dr.async_get(hass), er.async_get(hass)
    floors = [fr.async_get(hass).async_create(f"Floor {n}") for n in range(3)]
    areas = [
        ar.async_get(hass).async_create(f"Room {n}", floor_id=floors[n % 3].floor_id)
        for n in range(20)
    ]
    labels = [lr.async_get(hass).async_create(f"Label {n}") for n in range(5)]
    hub = devices.async_get_or_create(
        config_entry_id=source.entry_id, identifiers={("demo", "hub")}, name="Hub"
    )
    via = (
        {"via_device_id": hub.id}
        if "via_device_id" in dr.DeviceRegistry.async_get_or_create.__code__.co_varnames
        else {"via_device": ("demo", "hub")}
    )
    entity_ids = []
    for n in range(ENTITIES):
        device = devices.async_get_or_create(
            config_entry_id=source.entry_id,
            identifiers={("demo", f"meter-{n}")},
            name=f"Meter {n}",
            manufacturer="Acme",
            model="M1",
            **via,
        )
        devices.async_update_device(
            device.id, area_id=areas[n % 20].id, labels={labels[n % 5].label_id}
        )
        entry = entities.async_get_or_create(
            "sensor",
            "demo",
            f"power-{n}",
            device_id=device.id,
            original_device_class="power",
            unit_of_measurement="W",
            suggested_object_id=f"power_{n}",
        )
        entity_ids.append(entry.entity_id)
    return entity_ids


ATTRIBUTES = [
    {
        "unit_of_measurement": "W",
        "device_class": "power",
        "state_class": "measurement",
        "friendly_name": f"Power {n}",
        "voltage": 230.1,
        "current": 0.5,
    }
    for n in range(ENTITIES)
]


def fire(hass: HomeAssistant, entity_ids: list[str], start: int, count: int) -> None:
    """``count`` state changes, round robin over the entities."""
    for number in range(start, start + count):
        index = number % ENTITIES
        hass.states.async_set(
            entity_ids[index], str(number % 5000 / 10), ATTRIBUTES[index]
        )


async def fire_all(hass: HomeAssistant, entity_ids: list[str], events: int) -> None:
    """``events`` state changes as fast as the loop allows, 1,000 per turn (so
    the integrations' tasks run in between), and what they set off."""
    for start in range(0, events, 1000):
        fire(hass, entity_ids, start, 1000)
        await asyncio.sleep(0)
    await hass.async_block_till_done()


class Target:
    """Where the integrations write; counts the benchmark's own points stored there
    (HA Ingestor's health entities are recorded too, and left out)."""

    async def count(self, session: aiohttp.ClientSession) -> int:
        raise NotImplementedError

    async def wait_for(
        self, expected: int, timeout: float, settle: float = 20
    ) -> tuple[int, float]:
        """Poll until ``expected`` points are stored, or the count has stopped
        growing for ``settle`` seconds (points were lost: the built-in integration
        drops what waited over 30 s). Returns (count, seconds until the last
        point was counted)."""
        start = last_growth = time.monotonic()
        count = 0
        async with aiohttp.ClientSession() as session:
            while (now := time.monotonic()) - start < timeout and (
                now - last_growth < settle
            ):
                counted = await self.count(session)
                if counted != count:
                    count, last_growth = counted, time.monotonic()
                if count >= expected:
                    break
                await asyncio.sleep(0.2)
        return count, last_growth - start


class InfluxTarget(Target):
    """The InfluxDB 1.x the integrations write to."""

    def __init__(self, server: InfluxDB1Server) -> None:
        self.server = server
        credentials = f"{server.admin_user}:{server.admin_password}".encode()
        self.headers = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode()
        }

    async def count(self, session: aiohttp.ClientSession) -> int:
        async with session.post(
            f"{self.server.url}/query",
            data={
                "q": "SELECT count(value) FROM /.*/ WHERE entity_id =~ /power_/",
                "db": DATABASE,
            },
            headers=self.headers,
        ) as response:
            result = (await response.json())["results"][0]
        return sum(series["values"][0][1] for series in result.get("series", []))


class VictoriaTarget(Target):
    """VictoriaMetrics behind a 2.x entry: it stores measurement ``sensor``'s field
    ``value`` as the metric ``sensor_value``."""

    query = 'sum(count_over_time(sensor_value{entity_id=~"sensor.power_.*"}[1d]))'

    def __init__(self, server: VictoriaMetricsServer) -> None:
        self.server = server

    async def count(self, session: aiohttp.ClientSession) -> int:
        # Rows are searchable only once flushed (about a second otherwise), and
        # query results are cached unless told not to.
        async with session.get(f"{self.server.url}/internal/force_flush"):
            pass
        async with session.get(
            f"{self.server.url}/api/v1/query",
            params={"query": self.query, "nocache": "1"},
        ) as response:
            result = (await response.json())["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0


class WebhookReceiver(Target):
    """``benchmarks/receiver.py`` in its own process (its CPU is not Home
    Assistant's): answers 204 at once and counts the benchmark's events it got.
    ``current`` is the one the ``ingestor_webhook`` kind posts to."""

    current: ClassVar[WebhookReceiver | None] = None

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "receiver.py"),
                f"--secret={WEBHOOK_SECRET}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.stop()
            raise RuntimeError(f"the webhook receiver did not start: {port!r}")
        self.url = f"http://127.0.0.1:{port}"

    async def counts(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(f"{self.url}/count") as response:
            counts: dict[str, int] = await response.json()
        return counts

    async def count(self, session: aiohttp.ClientSession) -> int:
        return (await self.counts(session))["bench_events"]

    def stop(self) -> None:
        """Stop it by its pid."""
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


# A point as HA Ingestor writes it in these runs (see the spool mode's replay).
POINT = (
    "sensor,area=Room\\ {room},device=Meter\\ {n},device_class=power,"
    "device_id=f6e1051c3fd2005f84c9fc7cf26c{n:04d},domain=sensor,"
    "entity_id=sensor.power_{n},floor=Floor\\ {floor},integration=demo,"
    "labels=Label\\ {label},manufacturer=Acme,model=M1,parent_device=Hub,"
    "parent_device_id=ff9553eea2303dcdcd2f2d68be0e05df,unit=W "
    'value={value},state="{value}",friendly_name="Power {n}",'
    'context_id="01M8NKBGZZW8Q3VFKFXG30RH5T",hour=22,weekday=6,voltage=230.1,'
    "current=0.5 {time}"
)


async def influxdb_ceiling(server: InfluxDB1Server, events: int) -> dict[str, Any]:
    """What the server alone ingests: points like HA Ingestor's, 5,000 a request,
    two requests in flight (as HA Ingestor writes), from a bare aiohttp client."""
    server.create_database(DATABASE)
    bodies = [
        "\n".join(
            POINT.format(
                room=n % 20,
                n=n % ENTITIES,
                floor=n % 3,
                label=n % 5,
                value=n % 5000 / 10,
                time=1_700_000_000_000_000_000 + n * 1000,
            )
            for n in range(start, min(start + 5000, events))
        ).encode()
        for start in range(0, events, 5000)
    ]
    headers = InfluxTarget(server).headers
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with session.post(
                f"{server.url}/write",
                params={"db": DATABASE, "precision": "ns"},
                data=body,
                headers=headers,
            ) as response:
                assert response.status == 204, await response.text()

        began = time.monotonic()
        for index in range(0, len(bodies), 2):
            await asyncio.gather(*(post(body) for body in bodies[index : index + 2]))
        seconds = time.monotonic() - began
    return {"points_per_s": events / seconds}


class GcClock:
    """CPU time the garbage collector spends, from ``settle`` on: in all, and in
    its full passes (generation 2, which walk the whole heap). It runs in the
    thread that allocates, here the event loop's, so that thread's clock is read."""

    seconds = 0.0
    full_seconds = 0.0
    _started = 0.0

    @classmethod
    def callback(cls, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            cls._started = time.thread_time()
            return
        spent = time.thread_time() - cls._started
        cls.seconds += spent
        if info["generation"] == 2:
            cls.full_seconds += spent


async def settle(hass: HomeAssistant) -> None:
    """Start a measurement from a quiet loop and a collected heap.

    A full garbage collection here takes about 0.5 s (Home Assistant's heap,
    and the ``Event``/``Context`` cycles of every state change); collecting
    first gives every configuration the same starting point. (It did not
    measurably narrow the spread between rounds: the machine is the noise.)
    """
    await hass.async_block_till_done()
    gc.collect()
    GcClock.seconds = GcClock.full_seconds = 0.0
    if GcClock.callback not in gc.callbacks:
        gc.callbacks.append(GcClock.callback)


async def setup_integration(
    hass: HomeAssistant, kind: str, server: InfluxDB1Server, options: dict[str, Any]
) -> MockConfigEntry | None:
    """Set up nothing (baseline), the built-in influxdb, or HA Ingestor (with
    ``ingestor_webhook``, its webhook sink on too, posting to the receiver).

    ``listener`` is HA with one no-op ``state_changed`` listener: what any real
    install already pays (recorder, automations), because with a listener HA builds
    an ``Event`` per state change, tied to its ``Context`` in a reference cycle that
    only the garbage collector frees.
    """
    if kind == "baseline":
        return None
    if kind == "listener":
        hass.bus.async_listen(EVENT_STATE_CHANGED, callback(lambda event: None))
        return None
    if kind == "builtin":
        entry = MockConfigEntry(
            domain="influxdb",
            data={
                "api_version": "1",
                "host": "127.0.0.1",
                "port": server.port,
                "database": DATABASE,
                "username": server.admin_user,
                "password": server.admin_password,
                "ssl": False,
                "verify_ssl": False,
            },
        )
    else:
        if kind == "ingestor_webhook":
            receiver = WebhookReceiver.current
            assert receiver is not None, "no webhook receiver running"
            options = {
                **options,
                "webhook_url": f"{receiver.url}/",
                "webhook_secret": WEBHOOK_SECRET,
            }
        entry = MockConfigEntry(
            domain="ha_ingestor",
            data={
                "api_version": "1",
                "url": server.url,
                "database": DATABASE,
                "username": server.admin_user,
                "password": server.admin_password,
                "verify_ssl": True,
            },
            options=options,
        )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id), kind
    await hass.async_block_till_done()
    return entry


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    config_dir = tempfile.mkdtemp(prefix="ha_ingestor_bench_")
    Path(config_dir, "configuration.yaml").write_text("")
    server = VictoriaMetricsServer() if args.mode == "v2" else InfluxDB1Server()
    try:
        server.start()
        if isinstance(server, InfluxDB1Server):
            server.create_database(DATABASE)
            if args.mode == "ceiling":
                return await influxdb_ceiling(server, args.events)
        if args.kind == "ingestor_webhook":
            WebhookReceiver.current = WebhookReceiver()
        # The harness has no network/zeroconf set up; HA's shared session then
        # needs a plain resolver (the server is 127.0.0.1 anyway).
        with patch(
            "homeassistant.helpers.aiohttp_client._async_make_resolver",
            return_value=_resolver(),
        ):
            return await _measure_in_hass(args, server, config_dir)
    finally:
        if WebhookReceiver.current is not None:
            WebhookReceiver.current.stop()
            WebhookReceiver.current = None
        server.cleanup()
        shutil.rmtree(config_dir, ignore_errors=True)


async def _measure_in_hass(
    args: argparse.Namespace,
    server: InfluxDB1Server | VictoriaMetricsServer,
    config_dir: str,
) -> dict[str, Any]:
    async with async_test_home_assistant(config_dir=config_dir) as hass:
        hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)
        entity_ids = build_home(hass)
        await hass.async_block_till_done()
        try:
            result = await MODES[args.mode](hass, args, server, entity_ids)
        finally:
            # The built-in integration's writer thread only ends on unload.
            for entry in hass.config_entries.async_entries():
                await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_stop(force=True)
    return result


async def mode_throughput(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Fire N events as fast as the loop allows; wait until all are stored (with
    the webhook on, also until the receiver has every event: the CPU counted
    includes building, encoding, signing and posting them all)."""
    await setup_integration(hass, args.kind, server, {"batch_size": 5000})
    target = InfluxTarget(server)
    receiver = WebhookReceiver.current
    await settle(hass)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await fire_all(hass, ids, args.events)
    fired_s = time.monotonic() - wall0
    stored, wall = args.events, fired_s
    webhook: dict[str, Any] = {}
    done: list[tuple[int, float]] = []
    if args.kind not in ("baseline", "listener"):
        waits = [target.wait_for(args.events, timeout=600)]
        if receiver is not None:
            waits.append(receiver.wait_for(args.events, timeout=600))
        done = await asyncio.gather(*waits)
        stored = min(count for count, _ in done)
        wall = fired_s + max(waited for _, waited in done)
    cpu = time.process_time() - cpu0
    if receiver is not None:
        async with aiohttp.ClientSession() as session:
            counts = await receiver.counts(session)
        webhook = {
            "stored_influxdb": done[0][0],
            "received": counts["bench_events"],
            "webhook_requests": counts["requests"],
            "webhook_mb": counts["bytes"] / 1_048_576,
            "bad_signatures": counts["bad_signatures"],
        }
    return {
        "cpu_s": cpu,
        # Of which the garbage collector's passes (whoever's objects they free).
        "gc_s": GcClock.seconds,
        "gc_full_s": GcClock.full_seconds,
        "fire_s": fired_s,
        "wall_s": wall,
        "stored": stored,
        # Points confirmed in InfluxDB per second, from the first event fired
        # (with the webhook on, confirmed in both).
        "events_per_s": stored / wall,
        **webhook,
    }


async def mode_lag(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Event-loop lag while events arrive at ``rate`` per second."""
    await setup_integration(hass, args.kind, server, {})
    await settle(hass)
    lags: list[float] = []
    stop = time.monotonic() + args.seconds

    async def sampler() -> None:
        while time.monotonic() < stop:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before - 0.005)

    task = asyncio.create_task(sampler())
    fired = 0
    start = time.monotonic()
    while time.monotonic() < stop:
        due = int((time.monotonic() - start) * args.rate)
        fire(hass, ids, fired, due - fired)
        fired = due
        await asyncio.sleep(0.01)
    await task
    return {
        "lag_p99_ms": statistics.quantiles(lags, n=100)[98] * 1000,
        "lag_max_ms": max(lags) * 1000,
        "fired": fired,
    }


async def mode_latency(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Event time → write confirmed, at a steady ``rate`` per second; and how
    often each integration writes, how many points at a time.

    The writer of each integration is wrapped to note, when a write returns, how
    old each point in it is (its timestamp is the state's last_updated).
    """
    entry = await setup_integration(hass, args.kind, server, {})
    assert entry is not None
    latencies: list[float] = []
    # (when the write returned, its points), for each write with points.
    writes: list[tuple[float, int]] = []
    if args.kind == "ingestor":
        writer = entry.runtime_data.writer
        original = writer.async_write

        async def timed(body: bytes) -> None:
            await original(body)
            now = time.time_ns()
            ages = [
                (now - int(line.rsplit(b" ", 1)[1])) / 1e9
                for line in body.split(b"\n")
                if line
            ]
            if ages:  # not the empty probe write at startup
                writes.append((time.monotonic(), len(ages)))
                latencies.extend(ages)

        writer.async_write = timed
    else:
        thread = entry.runtime_data
        original_write = thread.influx.write

        def timed_write(json_points: list[dict[str, Any]]) -> None:
            original_write(json_points)
            now = time.time()
            writes.append((time.monotonic(), len(json_points)))
            latencies.extend(now - point["time"].timestamp() for point in json_points)

        thread.influx = copy.replace(thread.influx, write=timed_write)
    await settle(hass)
    fired = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        due = int((time.monotonic() - start) * args.rate)
        fire(hass, ids, fired, due - fired)
        fired = due
        await asyncio.sleep(0.005)
    stop = time.monotonic()
    await InfluxTarget(server).wait_for(fired, timeout=60)
    quantiles = statistics.quantiles(latencies, n=100)
    # Requests while events arrived; batch size over every write of the run.
    while_firing = sum(1 for moment, _ in writes if start <= moment <= stop)
    return {
        "p50_ms": quantiles[49] * 1000,
        "p95_ms": quantiles[94] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "writes_per_s": while_firing / (stop - start),
        "points_per_write": sum(points for _, points in writes) / len(writes),
        "measured": len(latencies),
        "fired": fired,
    }


async def mode_memory(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Peak RSS with N points held in memory: the server is paused (SIGSTOP)
    while they arrive, so its first write hangs and both integrations queue the
    rest (HA Ingestor writes a point at once when idle, so a live server would
    take part of them)."""
    before = rss_mb()
    await setup_integration(
        hass,
        args.kind,
        server,
        {
            "batch_size": 100_000,
            "flush_interval": 3600,
            "max_memory_points": 10_000_000,
        },
    )
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for start in range(0, args.events, 1000):
            await asyncio.sleep(0)
            fire(hass, ids, start, 1000)
        # Nothing awaited since the last event: a full batch is only taken
        # once the consumer task runs.
        held = rss_mb()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    await hass.async_block_till_done()
    return {"rss_mb": held, "rss_before_mb": before, "rss_after_write_mb": rss_mb()}


async def mode_outage(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """The server is down for ``seconds`` at ``rate`` events/s, then comes back."""
    await setup_integration(hass, args.kind, server, {})
    server.stop()
    fired = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        due = int((time.monotonic() - start) * args.rate)
        fire(hass, ids, fired, due - fired)
        fired = due
        await asyncio.sleep(0.01)
    rss = rss_mb()
    server.start()
    if args.kind == "ingestor":
        await hass.services.async_call("ha_ingestor", "flush", blocking=True)
    stored, _ = await InfluxTarget(server).wait_for(fired, timeout=120)
    return {"rss_mb": rss, "fired": fired, "stored": stored}


async def mode_spool(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Points/s into the spool with the server down, and replay points/s after."""
    entry = await setup_integration(hass, "ingestor", server, {"batch_size": 5000})
    assert entry is not None
    pipeline = entry.runtime_data.pipeline
    server.stop()
    await fire_all(hass, ids, args.events)
    # The consumer has already spooled part of the queue while the events were
    # fired: the rate counts only what this flush moved, in the time it took.
    spooled_before = pipeline.spool.points
    began = time.monotonic()
    await pipeline.async_flush()  # fails: the whole queue goes to the spool
    spool_s = time.monotonic() - began
    moved = pipeline.spool.points - spooled_before
    # The health entities' own state changes are recorded (and spooled) too.
    assert pipeline.spool.points >= args.events, pipeline.spool.points
    server.start()
    began = time.monotonic()
    assert await pipeline.async_flush(force=True)
    replay_s = time.monotonic() - began
    stored, _ = await InfluxTarget(server).wait_for(args.events, timeout=60)
    return {
        "spool_points_per_s": moved / spool_s,
        "replay_points_per_s": args.events / replay_s,
        "stored": stored,
    }


class RegistryChurn:
    """One registry change at a time, in turn: a device renamed, moved to another
    area, relabelled; an area renamed; an entity renamed. Each clears HA
    Ingestor's enrichment cache, so every entity's series key is built again."""

    def __init__(self, hass: HomeAssistant, entity_ids: list[str]) -> None:
        self.hass = hass
        self.entity_ids = entity_ids
        self.area_ids = [area.id for area in ar.async_get(hass).async_list_areas()]
        self.label_ids = [
            label.label_id for label in lr.async_get(hass).async_list_labels()
        ]
        self.changes = 0

    def change(self) -> None:
        number = self.changes
        self.changes += 1
        entities, devices = er.async_get(self.hass), dr.async_get(self.hass)
        # A different entity each time, spread over the home.
        entity_id = self.entity_ids[number * 37 % len(self.entity_ids)]
        entity = entities.async_get(entity_id)
        assert entity is not None
        assert entity.device_id is not None
        match number % 5:
            case 0:
                devices.async_update_device(
                    entity.device_id, name_by_user=f"Meter renamed {number}"
                )
            case 1:
                devices.async_update_device(
                    entity.device_id,
                    area_id=self.area_ids[number % len(self.area_ids)],
                )
            case 2:
                devices.async_update_device(
                    entity.device_id,
                    labels={self.label_ids[number % len(self.label_ids)]},
                )
            case 3:
                ar.async_get(self.hass).async_update(
                    self.area_ids[number % len(self.area_ids)],
                    name=f"Room renamed {number}",
                )
            case _:
                entities.async_update_entity(entity_id, name=f"Power {number}")


async def mode_soak(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """HA Ingestor with default options for ``minutes`` at ``rate`` events/s, a
    registry change every 10 s and the server down for 2 of every 15 minutes in
    the middle; the process's current RSS every 5 s."""
    assert args.kind == "ingestor", "the soak measures HA Ingestor only"
    entry = await setup_integration(hass, "ingestor", server, {})
    assert entry is not None
    pipeline = entry.runtime_data.pipeline
    duration = args.minutes * 60
    warm_up = min(60.0, duration / 15)
    outage = duration / 7.5  # 2 minutes of 15
    down_at = (duration - outage) / 2
    churn = RegistryChurn(hass, ids)
    moments: dict[str, float] = {}
    heap: dict[str, dict[str, float]] = {}

    async def take_server_down(start: float) -> None:
        # In the executor: stopping and starting influxd blocks for a second or
        # two, and events go on arriving meanwhile.
        await asyncio.sleep(down_at)
        moments["down"] = time.monotonic() - start
        heap["before_outage"] = heap_now()
        await hass.async_add_executor_job(server.stop)
        await asyncio.sleep(max(0.0, start + down_at + outage - time.monotonic()))
        await hass.async_add_executor_job(server.start)
        moments["up"] = time.monotonic() - start

    await settle(hass)
    # (seconds since start, RSS MB, points held in memory, points spooled)
    samples: list[tuple[float, float, int, int]] = []
    fired = 0
    next_sample = next_change = 0.0
    start = time.monotonic()
    outage_task = asyncio.create_task(take_server_down(start))
    while (elapsed := time.monotonic() - start) < duration:
        due = int(elapsed * args.rate)
        fire(hass, ids, fired, due - fired)
        fired = due
        if elapsed >= next_sample:
            samples.append(
                (elapsed, current_rss_mb(), pipeline.held, pipeline.spool.points)
            )
            next_sample += 5
        if elapsed >= next_change:
            churn.change()
            next_change += 10
        await asyncio.sleep(0.01)
    await outage_task
    # Waits between retries double while the server is down: delivery may
    # pause for about as long as the outage lasted before it resumes.
    stored, waited = await InfluxTarget(server).wait_for(
        fired, timeout=600, settle=max(20.0, outage)
    )
    heap["end"] = heap_now()
    return {
        **soak_summary(samples, warm_up, moments["down"], moments["up"], duration),
        # What RSS is made of, before the outage and at the end: Python's live
        # objects, and SQLite's own allocations (the spool's page cache).
        "heap": heap,
        "minutes": args.minutes,
        "rate": args.rate,
        "registry_changes": churn.changes,
        "fired": fired,
        "stored": stored,
        "stored_s_after_last_event": waited,
        "samples": [
            [round(t, 1), round(rss, 2), held, spooled]
            for t, rss, held, spooled in samples
        ],
    }


def heap_now() -> dict[str, float]:
    """Python's allocated memory blocks and SQLite's memory in use (MB)."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        library.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite_mb = library.sqlite3_memory_used() / 1_048_576
    except (OSError, AttributeError):
        sqlite_mb = math.nan
    return {"python_blocks": sys.getallocatedblocks(), "sqlite_mb": sqlite_mb}


def soak_summary(
    samples: list[tuple[float, float, int, int]],
    warm_up: float,
    down_at: float,
    up_at: float,
    duration: float,
) -> dict[str, Any]:
    """RSS at the start (after warm-up), peak, end; its level in the minute
    before the outage and in the last two minutes (of 15; medians); its slope
    after warm-up without the outage and recovery (least squares), and the noise
    about it.

    Recovery ends at the first sample after the server is back with the spool
    empty and no more points held than before the outage."""
    steady = [s for s in samples if warm_up <= s[0] < down_at]
    normal_held = max((s[2] for s in steady), default=0)
    recovered_at = next(
        (s[0] for s in samples if s[0] >= up_at and s[3] == 0 and s[2] <= normal_held),
        None,
    )
    window = min(60.0, down_at - warm_up)
    before = [s[1] for s in steady if s[0] >= down_at - window]
    # After recovery: the last 2 minutes of 15, or in a short soak at least the
    # last sample.
    recovered = [
        s for s in samples if recovered_at is not None and s[0] >= recovered_at
    ]
    after = [s[1] for s in recovered if s[0] >= duration * (1 - 2 / 15)] or [
        s[1] for s in recovered[-1:]
    ]
    # One slope, an intercept either side of the outage: a step across it is
    # the before/after figure above, not growth.
    sides = [[(s[0] / 60, s[1]) for s in side] for side in (steady, recovered) if side]
    means = [
        (statistics.fmean(x for x, _ in side), statistics.fmean(y for _, y in side))
        for side in sides
    ]
    pairs = [
        (x - mean_x, y - mean_y)
        for side, (mean_x, mean_y) in zip(sides, means, strict=True)
        for x, y in side
    ]
    spread = sum(dx * dx for dx, _ in pairs)
    slope = sum(dx * dy for dx, dy in pairs) / spread if spread else 0.0
    residuals = [dy - slope * dx for dx, dy in pairs]
    fitted = [x for side in sides for x, _ in side]
    started = next(s for s in samples if s[0] >= warm_up)
    # 15 stretches of the run (minutes, in the default 15-minute soak).
    stretch = duration / 15
    series = []
    for index in range(15):
        inside = [s for s in samples if index * stretch <= s[0] < (index + 1) * stretch]
        if inside:
            series.append(
                [
                    round(index * stretch / 60, 2),
                    round(statistics.median(s[1] for s in inside), 1),
                    max(s[2] for s in inside),
                    max(s[3] for s in inside),
                ]
            )
    return {
        "warm_up_s": warm_up,
        "down_at_s": down_at,
        "up_at_s": up_at,
        "recovered_at_s": recovered_at,
        "rss_start_mb": started[1],
        "rss_peak_mb": max(s[1] for s in samples),
        "rss_end_mb": samples[-1][1],
        "rss_before_outage_mb": statistics.median(before) if before else None,
        "rss_after_recovery_mb": statistics.median(after) if after else None,
        "slope_mb_per_min": slope,
        "fitted_minutes": fitted[-1] - fitted[0],
        # Twice the spread about the line, at least 1 MB: RSS moves by whole
        # arenas and pages, and the collector runs when it likes.
        "noise_mb": max(1.0, 2 * statistics.pstdev(residuals)),
        "held_max": max(s[2] for s in samples),
        "spooled_max": max(s[3] for s in samples),
        # [from minute, median RSS MB, most points held, most points spooled]
        "series": series,
    }


async def mode_v2(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: VictoriaMetricsServer,
    ids: list[str],
) -> dict[str, Any]:
    """A 2.x entry's cost: N events as fast as the loop allows into
    VictoriaMetrics' InfluxDB v2 write API; wait until all are stored."""
    if args.kind == "ingestor":
        entry = MockConfigEntry(
            domain="ha_ingestor",
            data={
                "api_version": "2",
                "url": server.url,
                "token": "bench-token",
                "organization": "bench",
                "bucket": DATABASE,
                "verify_ssl": True,
            },
            options={"batch_size": 5000},
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    else:
        assert args.kind == "baseline", "the v2 mode compares HA Ingestor with HA"
    # Before any event: what loading the entry (and its libraries) costs.
    rss_setup = current_rss_mb()
    await settle(hass)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await fire_all(hass, ids, args.events)
    stored, wall = args.events, time.monotonic() - wall0
    if args.kind == "ingestor":
        stored, waited = await VictoriaTarget(server).wait_for(args.events, timeout=600)
        wall += waited
    return {
        "cpu_s": time.process_time() - cpu0,
        "rss_mb": rss_mb(),
        "rss_setup_mb": rss_setup,
        "wall_s": wall,
        "stored": stored,
        "events_per_s": stored / wall,
    }


HISTORY_ENTITIES = 200
HISTORY_DAYS = 7
BACKFILL_RATES = (100, 1000)


async def record_history(
    hass: HomeAssistant, states: int, end: float
) -> tuple[float, float]:
    """Home Assistant's recorder on a SQLite file, and ``states`` past states of
    ``HISTORY_ENTITIES`` temperature sensors (not the live meters) spread evenly
    over the ``HISTORY_DAYS`` days before ``end`` (unix time), committed. Returns
    the history's first and last timestamps."""
    from homeassistant.helpers.recorder import (
        async_initialize_recorder,
        get_instance,
    )
    from homeassistant.setup import async_setup_component

    # What bootstrap does before any integration loads.
    async_initialize_recorder(hass)
    db = Path(hass.config.config_dir, "home.db")
    assert await async_setup_component(
        hass,
        "recorder",
        {"recorder": {"db_url": f"sqlite:///{db}", "commit_interval": 1}},
    )
    await hass.async_block_till_done()
    instance = get_instance(hass)
    assert await instance.async_db_ready
    per_entity = states // HISTORY_ENTITIES
    start = end - HISTORY_DAYS * 86400
    step = (end - start) / per_entity
    ids = [f"sensor.history_{n}" for n in range(HISTORY_ENTITIES)]
    attributes = [
        {
            "unit_of_measurement": "°C",
            "device_class": "temperature",
            "state_class": "measurement",
            "friendly_name": f"History {n}",
        }
        for n in range(HISTORY_ENTITIES)
    ]
    for number in range(per_entity):
        moment = start + number * step
        for index, entity_id in enumerate(ids):
            # The timestamp is the state's last_updated, as the recorder stores it.
            hass.states.async_set(
                entity_id,
                str((number * 7 + index) % 400 / 10),
                attributes[index],
                timestamp=moment + index / 1000,
            )
        # 10,000 at a time: the recorder's queue has a limit.
        if number % 50 == 49:
            await hass.async_block_till_done()
            await instance.async_block_till_done()
    await hass.async_block_till_done()
    await instance.async_block_till_done()
    return start, start + (per_entity - 1) * step + HISTORY_ENTITIES / 1000


async def recorded_states(hass: HomeAssistant) -> int:
    """How many states of the history the recorder's database holds."""
    from homeassistant.helpers.recorder import get_instance, session_scope
    from sqlalchemy import text

    def count() -> int:
        with session_scope(hass=hass, read_only=True) as session:
            return int(
                session.execute(
                    text(
                        "SELECT count(*) FROM states JOIN states_meta USING "
                        "(metadata_id) WHERE states_meta.entity_id LIKE 'sensor.history_%'"
                    )
                ).scalar_one()
            )

    return await get_instance(hass).async_add_executor_job(count)


class Window:
    """One stretch of live events: the age of each live point when its write
    returned (live points are newer than ``since_ns``; backfilled ones are days
    old), and the backfilled points whose writes returned while it was open."""

    def __init__(self) -> None:
        self.since_ns = time.time_ns()
        self.ages: list[float] = []
        self.backfilled = 0
        self.open = True


async def mode_backfill_latency(
    hass: HomeAssistant,
    args: argparse.Namespace,
    server: InfluxDB1Server,
    ids: list[str],
) -> dict[str, Any]:
    """Live latency (event time → write confirmed, as in the latency mode) for
    ``seconds`` at each of BACKFILL_RATES events/s, first without and then with
    ``ha_ingestor.backfill`` running over ``events`` states the recorder holds
    (7 days of 200 entities); that backfill is cancelled when its window ends.
    Last, the same backfill alone to its end, for its rate without live events.

    Live points are the meters' state changes, newer than the window's start;
    the backfill's are days old."""
    assert args.kind == "ingestor", "the backfill is HA Ingestor's"
    began = time.monotonic()
    first, last = await record_history(hass, args.events, time.time() - 600)
    history_s = time.monotonic() - began
    recorded = await recorded_states(hass)
    entry = await setup_integration(hass, "ingestor", server, {})
    assert entry is not None
    backfill = entry.runtime_data.backfill
    # Everything the backfill writes is at most as new as the history's last state.
    cutoff_ns = int((last + 1) * 1e9)
    window: Window | None = None
    backfilled = asyncio.Event()
    writer = entry.runtime_data.writer
    original = writer.async_write

    async def timed(body: bytes) -> None:
        await original(body)
        now = time.time_ns()
        lines = [line for line in body.split(b"\n") if line]
        stamps = [int(line.rsplit(b" ", 1)[1]) for line in lines]
        old = sum(1 for stamp in stamps if stamp < cutoff_ns)
        if old:
            backfilled.set()
        if window is not None:
            # The benchmark's own state changes: HA Ingestor's health entities
            # and its topology points (every entity, once after setup) are new
            # too, but come and go.
            since = window.since_ns
            window.ages.extend(
                (now - stamp) / 1e9
                for line, stamp in zip(lines, stamps, strict=True)
                if stamp >= since
                and line.startswith(b"sensor,")
                and b"entity_id=sensor.power_" in line
            )
            if window.open:
                window.backfilled += old

    writer.async_write = timed
    target = InfluxTarget(server)
    period = {
        "start": datetime.fromtimestamp(first - 1, UTC),
        "end": datetime.fromtimestamp(last + 1, UTC),
    }
    fired = 0

    async def measure_window(rate: int, with_backfill: bool) -> dict[str, Any]:
        nonlocal window, fired
        if with_backfill:
            backfilled.clear()
            await hass.services.async_call(DOMAIN, "backfill", period, blocking=True)
            # Running, and its first points written, before live events start.
            await asyncio.wait_for(backfilled.wait(), timeout=120)
        await settle(hass)
        window = current = Window()
        running_at_start = backfill.running
        ended_after: float | None = None
        first_fired = fired
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.seconds:
            due = first_fired + int(elapsed * rate)
            fire(hass, ids, fired, due - fired)
            fired = due
            if with_backfill and ended_after is None and not backfill.running:
                ended_after = elapsed
            await asyncio.sleep(0.005)
        seconds = time.monotonic() - start
        current.open = False
        cancelled = False
        if backfill.running:
            await hass.services.async_call(DOMAIN, "cancel_backfill", {}, blocking=True)
            cancelled = True
        stored, _ = await target.wait_for(fired, timeout=60)
        window = None
        quantiles = statistics.quantiles(current.ages, n=100)
        return {
            "p50_ms": quantiles[49] * 1000,
            "p95_ms": quantiles[94] * 1000,
            "p99_ms": quantiles[98] * 1000,
            "max_ms": max(current.ages) * 1000,
            "live_measured": len(current.ages),
            "live_fired": fired - first_fired,
            "stored_all": stored == fired,
            "backfilled_points": current.backfilled,
            "backfill_points_per_s": current.backfilled / seconds,
            **(
                {
                    "backfill_running_at_start": running_at_start,
                    # The backfill ran the whole window unless it ended inside.
                    "backfill_ended_after_s": ended_after,
                    "backfill_cancelled_at_end": cancelled,
                }
                if with_backfill
                else {}
            ),
        }

    windows: dict[str, dict[str, Any]] = {}
    for rate in BACKFILL_RATES:
        for with_backfill in (False, True):
            key = f"{rate}_{'backfill' if with_backfill else 'alone'}"
            windows[key] = await measure_window(rate, with_backfill)
    # The whole backfill, no live events: its rate on its own.
    await settle(hass)
    began = time.monotonic()
    response = await hass.services.async_call(
        DOMAIN, "backfill", period, blocking=True, return_response=True
    )
    alone_s = time.monotonic() - began
    assert response is not None
    backfilled_by_entry: Any = response["backfilled"]
    totals: dict[str, Any] = next(iter(backfilled_by_entry.values()))
    return {
        "history_states": recorded,
        "history_write_s": history_s,
        "rates": list(BACKFILL_RATES),
        "seconds": args.seconds,
        "windows": windows,
        "backfill_alone": {
            "points": totals["points_written"],
            "status": totals["status"],
            "seconds": alone_s,
            "points_per_s": totals["points_written"] / alone_s,
        },
    }


type Mode = Callable[
    [HomeAssistant, argparse.Namespace, Any, list[str]], Awaitable[dict[str, Any]]
]
MODES: dict[str, Mode] = {
    "throughput": mode_throughput,
    "lag": mode_lag,
    "latency": mode_latency,
    "memory": mode_memory,
    "outage": mode_outage,
    "spool": mode_spool,
    "soak": mode_soak,
    "v2": mode_v2,
    "backfill_latency": mode_backfill_latency,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted([*MODES, "ceiling"]))
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--minutes", type=float, default=15, help="the soak's length")
    parser.add_argument(
        "--components",
        help="a checkout whose custom_components/ to load instead of this one's "
        "(e.g. a `git worktree` of an older commit)",
    )
    args = parser.parse_args()
    if args.kind == "ingestor_webhook" and args.mode != "throughput":
        parser.error("ingestor_webhook is measured in the throughput mode only")
    if args.components:
        if not Path(args.components, "custom_components", DOMAIN).is_dir():
            parser.error(f"no custom_components/{DOMAIN} in {args.components}")
        assert "custom_components" not in sys.modules
        sys.path.insert(0, str(Path(args.components).resolve()))
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(measure(args))
    # Which checkout's integration was measured.
    if module := sys.modules.get(f"custom_components.{DOMAIN}"):
        result["integration"] = str(Path(str(module.__file__)).parent)
    result = {
        k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v)
        for k, v in result.items()
    }
    print(json.dumps({"mode": args.mode, "kind": args.kind, **result}))


if __name__ == "__main__":
    main()

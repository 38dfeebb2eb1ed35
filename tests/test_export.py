"""The export view streams back what InfluxDB holds: real 1.x, faked 2.x and 3."""

from __future__ import annotations

from collections.abc import AsyncIterator
import csv
from datetime import UTC, datetime
import io
import json
from pathlib import Path
import ssl
import tracemalloc
from typing import Any
from unittest.mock import Mock, patch
import urllib.parse

from aiohttp import ClientPayloadError
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ha_ingestor import export
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.export import EXPORT_URL

from .fake_influxdb import PARQUET_BYTES, FakeInfluxDB, parse_rfc3339
from .servers import InfluxDB1Server, _http, free_port
from .tls import make_self_signed

START = "2026-01-01T00:00:00Z"
END = "2026-01-02T00:00:00Z"


async def _setup(hass: HomeAssistant, data: dict[str, Any]) -> MockConfigEntry:
    entry = MockConfigEntry(domain=DOMAIN, title="home", data=data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _record_states(
    hass: HomeAssistant, entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    """Two sensors and a light change a few times on 2026-01-01; all written.

    The clock goes back to where it was: the client's access token was issued then.
    """
    now = dt_util.utcnow()
    freezer.move_to("2026-01-01T08:00:00.250Z")
    for humidity, value in enumerate(("20.5", "21", "unavailable", "22.25"), 40):
        hass.states.async_set(
            "sensor.temperature", value, {"unit_of_measurement": "°C"}
        )
        hass.states.async_set("sensor.humidity", str(humidity), {"battery": 90})
        freezer.tick(60)
    hass.states.async_set("light.kitchen", "on", {"brightness": 128})
    freezer.tick(1.5)
    hass.states.async_set("light.kitchen", "off")
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    freezer.move_to(now)


async def _get(
    hass_client: ClientSessionGenerator, **params: str | list[str]
) -> tuple[int, str]:
    client = await hass_client()
    response = await client.get(EXPORT_URL, params=_query(params))
    return response.status, await response.text()


def _query(params: dict[str, str | list[str]]) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, values in ({"start": START, "end": END} | params).items()
        for value in ([values] if isinstance(values, str) else values)
    ]


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["measurement"], row.get("entity_id", ""), parse_rfc3339(row["time"]))


def _v1_expected(influxdb: InfluxDB1Server, query: str) -> list[dict[str, Any]]:
    """The server's rows as the export promises them: time as nanoseconds for
    comparing, the measurement, no null or empty values."""
    rows = []
    for series in influxdb.query("home", query):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row |= {"measurement": series["name"]} | series.get("tags", {})
            rows.append({k: v for k, v in row.items() if v not in (None, "")})
    return sorted(
        rows, key=lambda row: (row["measurement"], row["entity_id"], row["time"])
    )


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({**row, "time": parse_rfc3339(row["time"])} for row in rows),
        key=lambda row: (row["measurement"], row["entity_id"], row["time"]),
    )


async def test_json_lines_are_exactly_what_influxdb_1_holds(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """One object per point: time (ISO 8601, UTC), measurement, tags, fields."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    await _record_states(hass, entry, freezer)
    client = await hass_client()
    response = await client.get(EXPORT_URL, params={"start": START, "end": END})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/jsonl; charset=utf-8"
    rows = _json_lines(await response.text())

    expected = _v1_expected(influxdb_v1, "SELECT * FROM /.*/ GROUP BY *")
    assert len(expected) == 10
    assert _comparable(rows) == expected
    assert all(row["time"].endswith("Z") for row in rows)
    assert {k: rows[0][k] for k in ("time", "measurement", "entity_id", "state")} == {
        "time": "2026-01-01T08:04:00.25Z",
        "measurement": "light",
        "entity_id": "light.kitchen",
        "state": "on",
    }
    assert "value" not in rows[0]  # null in InfluxDB's answer: left out
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_csv_is_what_influxdb_1_holds_with_fixed_leading_columns(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """time, measurement, entity_id, the other columns sorted, then _extra."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    await _record_states(hass, entry, freezer)
    client = await hass_client()
    response = await client.get(
        EXPORT_URL, params={"start": START, "end": END, "format": "csv"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(await response.text()))
    expected = _v1_expected(influxdb_v1, "SELECT * FROM /.*/ GROUP BY *")
    others = sorted({k for row in expected for k in row} - {"time", "measurement"})
    others.remove("entity_id")
    assert reader.fieldnames == ["time", "measurement", "entity_id", *others, "_extra"]
    rows = list(reader)
    assert all(row.pop("_extra") == "" for row in rows)
    assert _comparable([{k: v for k, v in row.items() if v != ""} for row in rows]) == [
        {k: v if k == "time" else _csv_text(v) for k, v in row.items()}
        for row in expected
    ]
    assert await hass.config_entries.async_unload(entry.entry_id)


def _csv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def test_entity_id_and_measurement_filters(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
) -> None:
    """entity_id repeats or is comma-separated; measurement picks one."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    await _record_states(hass, entry, freezer)

    status, text = await _get(hass_client, entity_id="sensor.temperature")
    assert status == 200
    assert {row["entity_id"] for row in _json_lines(text)} == {"sensor.temperature"}
    assert len(_json_lines(text)) == 4

    for entity_ids in (
        ["light.kitchen", "sensor.humidity"],
        ["light.kitchen,sensor.humidity"],
        [" light.kitchen , sensor.humidity,"],
    ):
        status, text = await _get(hass_client, entity_id=entity_ids)
        assert {row["entity_id"] for row in _json_lines(text)} == {
            "light.kitchen",
            "sensor.humidity",
        }
        assert len(_json_lines(text)) == 6

    status, text = await _get(hass_client, measurement="light")
    assert [row["state"] for row in _json_lines(text)] == ["on", "off"]

    status, text = await _get(
        hass_client, measurement="sensor", entity_id="light.kitchen"
    )
    assert (status, text) == (200, "")

    # A range holding nothing: an empty body (CSV: the header alone).
    status, text = await _get(hass_client, start="2025-01-01", end="2025-01-02")
    assert (status, text) == (200, "")
    status, text = await _get(
        hass_client, start="2025-01-01", end="2025-01-02", format="csv"
    )
    assert (status, text) == (200, "time,measurement,_extra\n")
    assert await hass.config_entries.async_unload(entry.entry_id)


def _write_lines(influxdb: InfluxDB1Server, lines: list[str]) -> None:
    data = influxdb.entry_data()
    status, body = _http(
        "POST",
        f"{influxdb.url}/write?"
        + urllib.parse.urlencode(
            {
                "db": "home",
                "precision": "ns",
                "u": data["username"],
                "p": data["password"],
            }
        ),
        "\n".join(lines).encode(),
    )
    assert status == 204, body


T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


async def test_csv_columns_seen_after_the_first_chunk_go_to_extra(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """The header is fixed by the first chunk; nothing later is dropped."""
    await hass.async_add_executor_job(
        _write_lines,
        influxdb_v1,
        [
            f"m,entity_id=sensor.a,room=x value=1,on=true {T0}",
            f'm,entity_id=sensor.b note="a, \\"b\\"",flag=true {T0 + 1}',
        ],
    )
    entry = await _setup(hass, influxdb_v1.entry_data())
    with patch.object(export, "CHUNK_SIZE", 1):
        status, text = await _get(hass_client, format="csv")
    assert status == 200
    assert text.splitlines() == [
        "time,measurement,entity_id,on,room,value,_extra",
        "2026-01-01T00:00:00Z,m,sensor.a,true,x,1,",
        '2026-01-01T00:00:00.000000001Z,m,sensor.b,,,,"{""flag"": true, ""note"": '
        '""a, \\""b\\""""}"',
    ]
    row = list(csv.DictReader(io.StringIO(text)))[1]
    assert json.loads(row["_extra"]) == {"flag": True, "note": 'a, "b"'}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_huge_range_streams_with_bounded_memory(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """60,000 points (26 MB of JSON Lines) leave in chunks of 100 rows.

    tracemalloc counts every Python allocation in this process, the handler's and
    the client's: its peak while the export streams (about 4 MB here, the same
    for twice the points) stays far below the body's size, which holding all rows
    (as dicts, or even as bytes) would exceed.
    """
    count = 60_000
    note = "n" * 300
    lines = [
        f'big,entity_id=sensor.big,domain=sensor value={i},state="{i}",note="{note}" '
        f"{T0 + i * 1_000_000_000}"
        for i in range(count)
    ]
    await hass.async_add_executor_job(_write_lines, influxdb_v1, lines)
    del lines
    entry = await _setup(hass, influxdb_v1.entry_data())
    client = await hass_client()
    size = rows = 0
    tracemalloc.start()
    try:
        with patch.object(export, "CHUNK_SIZE", 100):
            response = await client.get(
                EXPORT_URL,
                params={
                    "start": START,
                    "end": "2026-01-03T00:00:00Z",
                    "limit": "1000000",
                },
            )
            assert response.status == 200
            assert response.headers["Transfer-Encoding"] == "chunked"
            async for data in response.content.iter_chunked(64 * 1024):
                size += len(data)
                rows += data.count(b"\n")
                last = data
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == count
    assert last.endswith(b'"state":"59999","value":59999}\n')
    assert size > 25_000_000
    assert peak < size / 4, (peak, size)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_row_limit_caps_the_output(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """limit rows at most, across series and chunks, in JSON Lines and CSV."""
    await hass.async_add_executor_job(
        _write_lines,
        influxdb_v1,
        [
            f"m,entity_id=sensor.{name} value={i} {T0 + i}"
            for name in ("a", "b", "c")
            for i in range(10)
        ],
    )
    entry = await _setup(hass, influxdb_v1.entry_data())
    with patch.object(export, "CHUNK_SIZE", 4):
        status, text = await _get(hass_client, limit="13")
        assert status == 200
        rows = _json_lines(text)
        assert [row["entity_id"] for row in rows] == ["sensor.a"] * 10 + [
            "sensor.b"
        ] * 3
        status, text = await _get(hass_client, limit="7", format="csv")
    assert len(text.splitlines()) == 1 + 7
    status, text = await _get(hass_client)
    assert len(_json_lines(text)) == 30
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"start": ""}, "start is required"),
        ({"start": "yesterday"}, "start: not an ISO 8601 date and time: 'yesterday'"),
        ({"end": "2026-13-01T00:00:00Z"}, "end: not an ISO 8601 date and time"),
        ({"start": "0001-01-01"}, "start: outside InfluxDB's time range"),
        ({"end": "9999-12-31T23:59:59+00:00"}, "end: outside InfluxDB's time range"),
        ({"start": END, "end": START}, "start must be before end"),
        ({"start": START, "end": START}, "start must be before end"),
        ({"format": "xml"}, "format must be one of json, csv, parquet"),
        ({"limit": "lots"}, "limit must be a whole number up to 1000000"),
        ({"limit": "0"}, "limit must be between 1 and 1000000"),
        ({"limit": "1000001"}, "limit must be between 1 and 1000000"),
        ({"entity_id": "sensor.a,Sensor B"}, "entity_id: not an entity id: 'Sensor B'"),
        ({"entity_id": "sensor.a'"}, "entity_id: not an entity id"),
        ({"measurement": "a\u2028b"}, "measurement: up to 256 printable characters"),
        ({"measurement": " a"}, "measurement: up to 256 printable characters"),
        ({"measurement": "m" * 257}, "measurement: up to 256 printable characters"),
        ({"config_entry_id": "nope"}, "config_entry_id: no HA Ingestor entry 'nope'"),
        ({"format": "parquet"}, "format=parquet is passed through from InfluxDB 3"),
    ],
)
async def test_bad_parameters_are_answered_400_with_the_reason(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    params: dict[str, str],
    reason: str,
) -> None:
    """Every refusal names its parameter and why."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    status, text = await _get(hass_client, **params)
    assert status == 400
    assert reason in text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_entry_must_be_named_unless_one_is_loaded(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    fake_influxdb: FakeInfluxDB,
) -> None:
    """With two entries loaded, config_entry_id picks one; unloaded is refused."""
    first = await _setup(hass, influxdb_v1.entry_data())
    second = await _setup(hass, fake_influxdb.v3_entry_data())
    status, text = await _get(hass_client)
    assert (status, text) == (400, "config_entry_id is required: 2 entries are loaded")
    status, _ = await _get(hass_client, config_entry_id=first.entry_id)
    assert status == 200
    assert await hass.config_entries.async_unload(second.entry_id)
    status, text = await _get(hass_client, config_entry_id=second.entry_id)
    assert (status, text) == (
        400,
        f"config_entry_id: entry '{second.entry_id}' is not loaded",
    )
    status, _ = await _get(hass_client)
    assert status == 200
    assert await hass.config_entries.async_unload(first.entry_id)
    status, text = await _get(hass_client)
    assert (status, text) == (400, "config_entry_id is required: 0 entries are loaded")


async def test_an_unauthenticated_request_is_refused(
    hass: HomeAssistant,
    hass_client_no_auth: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """No token, no data: 401."""
    entry = await _setup(hass, influxdb_v1.entry_data())
    client = await hass_client_no_auth()
    response = await client.get(EXPORT_URL, params={"start": START})
    assert response.status == 401
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_quotes_in_a_measurement_cannot_change_the_query(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """A measurement is always one quoted identifier, whatever it holds."""
    name = """x"'; DROP DATABASE "home"""
    await hass.async_add_executor_job(
        _write_lines,
        influxdb_v1,
        [f"{name.replace(' ', chr(92) + ' ')},entity_id=sensor.q value=1 {T0}"],
    )
    entry = await _setup(hass, influxdb_v1.entry_data())
    for measurement in ('m" OR 1=1', "m' OR time > 0 --", "m/ /.*/", "x\\"):
        status, text = await _get(hass_client, measurement=measurement)
        assert (status, text) == (200, "")
    status, text = await _get(hass_client, measurement=name)
    assert status == 200
    assert [row["measurement"] for row in _json_lines(text)] == [name]
    assert influxdb_v1.query("home", "SHOW MEASUREMENTS")[0]["values"] == [[name]]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_influxdb_errors_are_answered_502_without_secrets(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """The server's reason reaches the caller; credentials never do."""
    data = influxdb_v1.entry_data() | {"password": "wrong-secret"}
    entry = await _setup(hass, data)
    status, text = await _get(hass_client)
    assert (status, text) == (502, "InfluxDB: HTTP 401: authorization failed")
    assert await hass.config_entries.async_unload(entry.entry_id)

    entry = await _setup(hass, influxdb_v1.entry_data() | {"retention_policy": "rp"})
    status, text = await _get(hass_client)
    assert (status, text) == (502, "InfluxDB: retention policy not found: rp")
    assert await hass.config_entries.async_unload(entry.entry_id)

    anonymous = influxdb_v1.entry_data()
    del anonymous["username"], anonymous["password"]
    entry = await _setup(hass, anonymous)
    status, text = await _get(hass_client)
    assert status == 502
    assert text.startswith("InfluxDB: HTTP 401: ")
    assert await hass.config_entries.async_unload(entry.entry_id)

    entry = await _setup(
        hass, influxdb_v1.entry_data() | {"url": f"http://127.0.0.1:{free_port()}"}
    )
    status, text = await _get(hass_client)
    assert (status, text) == (
        502,
        "InfluxDB: cannot reach InfluxDB: ClientConnectorError",
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_failure_mid_stream_cuts_the_response_short(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once rows went out, an error ends the connection without the final
    chunk: the client sees a broken download, never a short one."""
    await hass.async_add_executor_job(
        _write_lines,
        influxdb_v1,
        [f"m,entity_id=sensor.a value={i} {T0 + i}" for i in range(10)],
    )
    entry = await _setup(hass, influxdb_v1.entry_data())
    rows = export._v1_rows

    def _fail_second(payload: Any) -> list[dict[str, Any]]:
        if _fail_second.calls:  # type: ignore[attr-defined]
            raise export.UpstreamError("boom")
        _fail_second.calls += 1  # type: ignore[attr-defined]
        return rows(payload)

    _fail_second.calls = 0  # type: ignore[attr-defined]
    client = await hass_client()
    with (
        patch.object(export, "CHUNK_SIZE", 3),
        patch.object(export, "_v1_rows", _fail_second),
    ):
        response = await client.get(EXPORT_URL, params={"start": START, "end": END})
        assert response.status == 200
        with pytest.raises(ClientPayloadError):
            await response.read()
    assert "Export from home stopped: boom" in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)


def _fake_rows(fake: FakeInfluxDB, target: str) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "time": point.time_ns,
                "measurement": point.measurement,
                **point.tags,
                **point.fields,
            }
            for point in fake.points[target]
        ),
        key=lambda row: (row["measurement"], row["entity_id"], row["time"]),
    )


async def test_influxdb_2_is_read_with_flux(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    fake_influxdb: FakeInfluxDB,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The async query API's records, pivoted into one row per point."""
    entry = await _setup(hass, fake_influxdb.v2_entry_data())
    await _record_states(hass, entry, freezer)
    status, text = await _get(hass_client)
    assert status == 200
    assert _comparable(_json_lines(text)) == _fake_rows(fake_influxdb, "home")
    assert len(_json_lines(text)) == 10

    status, text = await _get(
        hass_client, measurement="sensor", entity_id="sensor.humidity,light.kitchen"
    )
    assert [row["battery"] for row in _json_lines(text)] == [90.0] * 4
    status, text = await _get(hass_client, entity_id="light.kitchen", format="csv")
    assert status == 200
    assert [row["state"] for row in csv.DictReader(io.StringIO(text))] == ["on", "off"]
    status, text = await _get(hass_client, limit="3")
    assert len(_json_lines(text)) == 3
    with patch.object(export, "CHUNK_SIZE", 2):
        status, text = await _get(hass_client)
    assert len(_json_lines(text)) == 10

    fake_influxdb.tokens.clear()
    status, text = await _get(hass_client)
    assert (status, text) == (502, "InfluxDB: HTTP 401: unauthorized access")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_influxdb_2_unknown_bucket_and_unreachable_server(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    fake_influxdb: FakeInfluxDB,
) -> None:
    """Flux's own errors and a server that is gone are 502 with the reason."""
    entry = await _setup(hass, fake_influxdb.v2_entry_data() | {"bucket": "gone"})
    status, text = await _get(hass_client)
    assert status == 502
    assert 'could not find bucket "gone"' in text
    await fake_influxdb.stop()
    status, text = await _get(hass_client)
    assert status == 502
    assert text.startswith("InfluxDB: cannot reach InfluxDB: ")
    assert "good-token" not in text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_influxdb_3_is_read_with_sql_and_parquet_passes_through(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    fake_influxdb: FakeInfluxDB,
    freezer: FrozenDateTimeFactory,
) -> None:
    """JSON Lines and CSV from the server's JSON Lines; Parquet as it came."""
    entry = await _setup(hass, fake_influxdb.v3_entry_data())
    await _record_states(hass, entry, freezer)
    expected = [r for r in _fake_rows(fake_influxdb, "home") if r["domain"] == "sensor"]

    status, text = await _get(hass_client, measurement="sensor")
    assert status == 200
    assert _comparable(_json_lines(text)) == expected
    assert all(row["time"].endswith("Z") for row in _json_lines(text))

    status, text = await _get(
        hass_client, measurement="sensor", entity_id="sensor.humidity", format="csv"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["entity_id"], row["battery"]) for row in rows] == [
        ("sensor.humidity", "90.0")
    ] * 4
    status, text = await _get(hass_client, measurement="light", limit="1")
    assert [row["state"] for row in _json_lines(text)] == ["on"]
    with patch.object(export, "CHUNK_SIZE", 3):
        status, text = await _get(hass_client, measurement="sensor")
    assert _comparable(_json_lines(text)) == expected
    status, text = await _get(hass_client, measurement="sensor", entity_id="sensor.x")
    assert (status, text) == (200, "")

    client = await hass_client()
    response = await client.get(
        EXPORT_URL,
        params={
            "start": START,
            "end": END,
            "format": "parquet",
            "measurement": "light",
        },
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert await response.read() == PARQUET_BYTES

    status, text = await _get(hass_client)
    assert (status, text) == (
        400,
        "measurement is required with InfluxDB 3: its SQL reads one table "
        "(measurement) at a time",
    )
    status, text = await _get(hass_client, measurement="nothing")
    assert status == 502
    assert "table 'public.iox.nothing' not found" in text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_entry_tls_settings_apply_to_the_export(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    tmp_path: Path,
    socket_enabled: None,
) -> None:
    """Servers with a self-signed certificate: trusted through the entry's CA
    file (or with verification off), refused without; a CA file gone is said."""
    cert, key = make_self_signed(tmp_path)
    server = InfluxDB1Server(certificate=cert, key=key).start()
    try:
        server.create_database("home")
        copy = tmp_path / "ca.pem"
        copy.write_bytes(cert.read_bytes())
        for data, answer in (
            (server.entry_data() | {"ssl_ca_cert": str(cert)}, (200, "")),
            (
                server.entry_data(),
                (502, "InfluxDB: TLS error: ClientConnectorCertificateError"),
            ),
        ):
            entry = await _setup(hass, data)
            assert await _get(hass_client) == answer
            assert await hass.config_entries.async_unload(entry.entry_id)
        entry = await _setup(hass, server.entry_data() | {"ssl_ca_cert": str(copy)})
        copy.unlink()
        status, text = await _get(hass_client)
        assert status == 502
        assert text.startswith("InfluxDB: cannot load CA certificate: ")
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        server.cleanup()

    # influxdb-client (2.x) is given the same trust; a failed handshake is left
    # to the real server above (the fake's would be reported by this event loop).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake = FakeInfluxDB(ssl_context=context)
    fake.tokens.add("good-token")
    fake.orgs["home-org"] = {"home"}
    await fake.start()
    try:
        for data in (
            fake.v2_entry_data() | {"ssl_ca_cert": str(cert)},
            fake.v2_entry_data() | {"verify_ssl": False},
        ):
            entry = await _setup(hass, data)
            assert await _get(hass_client) == (200, "")
            assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await fake.stop()


class _Content:
    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def test_lines_are_split_wherever_the_network_cuts() -> None:
    """Lines come whole whatever the pieces; blank ones are skipped."""
    response = Mock(content=_Content([b'{"a":', b'1}\n\n{"b"', b":2}\n", b'{"c":3}']))
    assert [line async for line in export._lines(response)] == [
        b'{"a":1}',
        b'{"b":2}',
        b'{"c":3}',
    ]


def test_what_influxdb_1_cannot_answer_is_an_upstream_error() -> None:
    """A body that is not JSON, or an error for the whole query."""
    with pytest.raises(export.UpstreamError, match="not JSON: b'<html>'"):
        export._parse_json(b"<html>")
    with pytest.raises(export.UpstreamError, match=r"^timeout$"):
        export._v1_rows({"error": "timeout"})

"""Export: stream what InfluxDB holds for a time range out of Home Assistant.

``GET /api/ha_ingestor/export`` reads the entry's server in its own language —
InfluxQL with ``chunked=true`` on 1.x, Flux through influxdb-client's async
``query_stream`` on 2.x, SQL on 3 — and writes JSON Lines or CSV as the rows
arrive: one chunk of rows (``CHUNK_SIZE``) is held at a time, whatever the range,
and ``response.write`` waits while the client is slower than InfluxDB. Parquet is
passed through from InfluxDB 3 only: writing it here would need pyarrow (~100 MB)
inside Home Assistant. CSV's columns are ``time``, ``measurement``, ``entity_id``,
then the others seen in the first chunk, sorted; a later row's columns outside
them go, as a JSON object, to the last column ``_extra``: nothing is dropped.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
import csv
from dataclasses import dataclass
from datetime import UTC, datetime
import io
import json
import ssl
from typing import Any, Final

import aiohttp
from aiohttp import web
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, valid_entity_id
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView
from homeassistant.util import dt as dt_util, ssl as ssl_util
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from .const import (
    API_V1,
    API_V2,
    API_V3,
    CONF_API_VERSION,
    CONF_BUCKET,
    CONF_DATABASE,
    CONF_ORGANIZATION,
    CONF_PASSWORD,
    CONF_RETENTION_POLICY,
    CONF_SSL_CA_CERT,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
    DOMAIN,
    LOGGER,
)
from .writer import WriteError, async_ssl_context, parse_url, write_error

EXPORT_URL: Final = "/api/ha_ingestor/export"
CHUNK_SIZE: Final = 1000
DEFAULT_LIMIT: Final = 100_000
MAX_LIMIT: Final = 1_000_000
FORMATS: Final = ("json", "csv", "parquet")
CSV_LEADING: Final = ("time", "measurement", "entity_id")
CSV_EXTRA: Final = "_extra"
MAX_MEASUREMENT_LENGTH: Final = 256
# What a signed 64-bit count of nanoseconds since 1970 can hold.
EARLIEST: Final = datetime(1677, 9, 22, tzinfo=UTC)
LATEST: Final = datetime(2262, 4, 11, tzinfo=UTC)
# No total: a large export may take minutes; a server silent this long is gone.
TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
CONTENT_TYPES: Final = {
    "json": "application/jsonl; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
IDENTITY: Final = {"Accept-Encoding": "identity"}
_FLUX_META: Final = frozenset({"result", "table", "_start", "_stop"})

type Row = dict[str, Any]


class BadRequest(Exception):
    """A parameter is missing or wrong; the text says which and why."""


class UpstreamError(Exception):
    """InfluxDB could not be read; the text holds its message, never a secret."""


@dataclass(frozen=True, kw_only=True)
class ExportQuery:
    """What to export, from the request's query string."""

    start: datetime
    end: datetime
    format: str
    entity_ids: tuple[str, ...]
    measurement: str | None
    limit: int


def _datetime(name: str, value: str) -> datetime:
    try:
        parsed = dt_util.parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadRequest(f"{name}: not an ISO 8601 date and time: {value[:64]!r}")
    # Without an offset, UTC: the server's time, not the browser's.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed <= LATEST:
        raise BadRequest(f"{name}: outside InfluxDB's time range (1677 to 2262)")
    return parsed


def parse_query(params: Mapping[str, str], entity_ids: list[str]) -> ExportQuery:
    """Validate the parameters, or raise BadRequest with the reason."""
    if not (start := params.get("start")):
        raise BadRequest("start is required (ISO 8601, e.g. 2026-01-01T00:00:00Z)")
    begin = _datetime("start", start)
    end = _datetime("end", params["end"]) if params.get("end") else dt_util.utcnow()
    if begin >= end:
        raise BadRequest("start must be before end")
    if (fmt := params.get("format", "json")) not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise BadRequest(f"limit must be a whole number up to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    ids = tuple(
        dict.fromkeys(i.strip() for v in entity_ids for i in v.split(",") if i.strip())
    )
    for entity_id in ids:
        if not valid_entity_id(entity_id):
            raise BadRequest(f"entity_id: not an entity id: {entity_id[:64]!r}")
    measurement = params.get("measurement") or None
    if measurement is not None and (
        len(measurement) > MAX_MEASUREMENT_LENGTH
        or not measurement.isprintable()
        or measurement != measurement.strip()
    ):
        raise BadRequest(
            "measurement: up to 256 printable characters, no leading or trailing space"
        )
    return ExportQuery(
        start=begin,
        end=end,
        format=fmt,
        entity_ids=ids,
        measurement=measurement,
        limit=limit,
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Quoting: a name or value is always a quoted literal with its quotes and
# backslashes escaped, so no parameter can end it early.
def _influxql_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _influxql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flux_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def influxql(query: ExportQuery, retention_policy: str | None) -> str:
    """The InfluxQL for 1.x: every series apart, its tags beside its rows."""
    source = _influxql_ident(query.measurement) if query.measurement else "/.*/"
    if retention_policy:
        source = f"{_influxql_ident(retention_policy)}.{source}"
    where = (
        f"time >= {_influxql_string(_rfc3339(query.start))} "
        f"AND time < {_influxql_string(_rfc3339(query.end))}"
    )
    if query.entity_ids:
        where += (
            " AND ("
            + " OR ".join(
                f'"entity_id" = {_influxql_string(e)}' for e in query.entity_ids
            )
            + ")"
        )
    # LIMIT counts per series: an upper bound that saves the server work.
    return f"SELECT * FROM {source} WHERE {where} GROUP BY * LIMIT {query.limit}"  # noqa: S608


def flux(query: ExportQuery, bucket: str) -> str:
    """The Flux for 2.x: one record per point (fields pivoted into columns)."""
    lines = [
        f"from(bucket: {_flux_string(bucket)})",
        f"  |> range(start: {_rfc3339(query.start)}, stop: {_rfc3339(query.end)})",
    ]
    if query.measurement:
        measurement = _flux_string(query.measurement)
        lines.append(f"  |> filter(fn: (r) => r._measurement == {measurement})")
    if query.entity_ids:
        matches = " or ".join(
            f"r.entity_id == {_flux_string(e)}" for e in query.entity_ids
        )
        lines.append(f"  |> filter(fn: (r) => {matches})")
    lines.append(
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    lines.append('  |> drop(columns: ["_start", "_stop"])')
    return "\n".join(lines)


def sql(query: ExportQuery, measurement: str) -> str:
    """The SQL for InfluxDB 3: one table (a measurement), in time order."""
    where = (
        f"time >= {_sql_string(_rfc3339(query.start))} "
        f"AND time < {_sql_string(_rfc3339(query.end))}"
    )
    if query.entity_ids:
        where += (
            ' AND "entity_id" IN ('
            + ", ".join(_sql_string(e) for e in query.entity_ids)
            + ")"
        )
    return (
        f"SELECT * FROM {_sql_ident(measurement)} WHERE {where} "  # noqa: S608
        f"ORDER BY time LIMIT {query.limit}"
    )


@asynccontextmanager
async def _async_request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A response that succeeded, or UpstreamError with the server's message."""
    # Uncompressed: aiohttp before 3.12 inflates a gzipped body into its buffer
    # without flow control, so all of it would be in memory at once.
    headers = kwargs.pop("headers", {}) | IDENTITY
    try:
        async with session.request(
            method, url, headers=headers, timeout=TIMEOUT, **kwargs
        ) as response:
            if response.status >= 300:
                body = await response.content.read(64 * 1024)
                raise UpstreamError(str(write_error(response.status, body)))
            yield response
    except aiohttp.ClientSSLError as err:
        raise UpstreamError(f"TLS error: {type(err).__name__}") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise UpstreamError(f"cannot reach InfluxDB: {type(err).__name__}") from err


async def _lines(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes]:
    """The body's non-empty lines, as they arrive."""
    buffer = bytearray()
    async for data in response.content.iter_chunked(64 * 1024):
        buffer += data
        if (end := buffer.rfind(b"\n")) >= 0:
            for line in bytes(buffer[:end]).split(b"\n"):
                if line.strip():
                    yield line
            del buffer[: end + 1]
    if buffer.strip():
        yield bytes(buffer)


def _parse_json(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError as err:
        raise UpstreamError(f"not JSON: {line[:100]!r}") from err


def _v1_rows(payload: Any) -> list[Row]:
    """The rows of one InfluxQL chunk; an error in it raises UpstreamError."""
    if "error" in payload:
        raise UpstreamError(str(payload["error"]))
    rows: list[Row] = []
    for result in payload.get("results", ()):
        if "error" in result:
            raise UpstreamError(str(result["error"]))
        for series in result.get("series", ()):
            # GROUP BY * names every tag key of the query; "" is an absent tag.
            base = {"measurement": series["name"]} | {
                k: v for k, v in series.get("tags", {}).items() if v != ""
            }
            columns = series["columns"][1:]
            for values in series["values"]:
                row = {"time": values[0], **base}
                fields = zip(columns, values[1:], strict=True)
                row.update((c, v) for c, v in fields if v is not None)
                rows.append(row)
    return rows


async def _v1_batches(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery
) -> AsyncGenerator[list[Row]]:
    url = parse_url(data[CONF_URL])
    username = data.get(CONF_USERNAME) or url.user
    password = data.get(CONF_PASSWORD) or url.password
    headers = {}
    if username:
        credentials = base64.b64encode(f"{username}:{password or ''}".encode())
        headers["Authorization"] = "Basic " + credentials.decode("ascii")
    params = {
        "db": data[CONF_DATABASE],
        "q": influxql(query, data.get(CONF_RETENTION_POLICY)),
        "chunked": "true",
        "chunk_size": str(CHUNK_SIZE),
    }
    async with _async_request(
        _session(hass, data),
        "POST",
        str(url.with_user(None) / "query"),
        data=params,
        headers=headers,
        ssl=await _ssl(hass, data),
    ) as response:
        async for line in _lines(response):
            if rows := _v1_rows(_parse_json(line)):
                yield rows


def _flux_row(values: Mapping[str, Any]) -> Row:
    row: Row = {
        "time": _rfc3339(values["_time"]),
        "measurement": values["_measurement"],
    }
    row.update(
        (k, v)
        for k, v in values.items()
        if v is not None and k not in _FLUX_META and k not in ("_time", "_measurement")
    )
    return row


async def _v2_batches(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery
) -> AsyncGenerator[list[Row]]:
    setting = await _ssl(hass, data)
    if isinstance(setting, bool):
        # HA's contexts: the client would otherwise build one on the event loop,
        # loading the system certificates.
        setting = (
            ssl_util.get_default_context()
            if setting
            else ssl_util.get_default_no_verify_context()
        )
    client = InfluxDBClientAsync(
        url=str(parse_url(data[CONF_URL]).with_user(None)),
        token=data[CONF_TOKEN],
        org=data[CONF_ORGANIZATION],
        timeout=TIMEOUT,
        ssl_context=setting,
    )
    client.api_client.set_default_header(  # type: ignore[no-untyped-call]
        "Accept-Encoding", "identity"
    )
    try:
        records = await client.query_api().query_stream(flux(query, data[CONF_BUCKET]))
        async with aclosing(records):
            batch: list[Row] = []
            async for record in records:
                batch.append(_flux_row(record.values))
                if len(batch) >= CHUNK_SIZE:
                    yield batch
                    batch = []
            if batch:
                yield batch
    except ApiException as err:
        raise UpstreamError(f"HTTP {err.status}: {err.message or err.reason}") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise UpstreamError(f"cannot reach InfluxDB: {type(err).__name__}") from err
    finally:
        await client.close()  # type: ignore[no-untyped-call]


@asynccontextmanager
async def _v3_response(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery, fmt: str
) -> AsyncIterator[aiohttp.ClientResponse]:
    assert query.measurement is not None  # checked with the format
    async with _async_request(
        _session(hass, data),
        "POST",
        str(parse_url(data[CONF_URL]).with_user(None) / "api" / "v3" / "query_sql"),
        json={
            "db": data[CONF_DATABASE],
            "q": sql(query, query.measurement),
            "format": fmt,
        },
        headers={"Authorization": f"Bearer {data[CONF_TOKEN]}"},
        ssl=await _ssl(hass, data),
    ) as response:
        yield response


def _v3_time(value: str) -> str:
    # InfluxDB 3's time column has no zone (it is UTC), so JSON shows none.
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


async def _v3_batches(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery
) -> AsyncGenerator[list[Row]]:
    async with _v3_response(hass, data, query, "jsonl") as response:
        batch: list[Row] = []
        async for line in _lines(response):
            values = _parse_json(line)
            row: Row = {
                "time": _v3_time(values.pop("time")),
                "measurement": query.measurement,
            }
            row.update((k, v) for k, v in values.items() if v is not None)
            batch.append(row)
            if len(batch) >= CHUNK_SIZE:
                yield batch
                batch = []
        if batch:
            yield batch


async def _v3_parquet(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery
) -> AsyncGenerator[bytes]:
    async with _v3_response(hass, data, query, "parquet") as response:
        async for chunk in response.content.iter_chunked(64 * 1024):
            yield chunk


def _session(hass: HomeAssistant, data: Mapping[str, Any]) -> aiohttp.ClientSession:
    return async_get_clientsession(hass, verify_ssl=data.get(CONF_VERIFY_SSL, True))


async def _ssl(hass: HomeAssistant, data: Mapping[str, Any]) -> ssl.SSLContext | bool:
    try:
        return await async_ssl_context(
            hass, data.get(CONF_VERIFY_SSL, True), data.get(CONF_SSL_CA_CERT)
        )
    except WriteError as err:
        raise UpstreamError(str(err)) from err


async def _limited(
    batches: AsyncGenerator[list[Row]], limit: int
) -> AsyncGenerator[list[Row]]:
    """The first ``limit`` rows; the source is closed (its request ended) after."""
    async with aclosing(batches):
        async for batch in batches:
            if len(batch) >= limit:
                yield batch[:limit]
                return
            limit -= len(batch)
            yield batch


def _json_lines(rows: list[Row]) -> bytes:
    return "".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        for row in rows
    ).encode()


def _csv_columns(rows: list[Row]) -> list[str]:
    seen = dict.fromkeys(key for row in rows for key in row)
    rest = sorted(key for key in seen if key not in CSV_LEADING)
    return [key for key in CSV_LEADING if key in seen or key != "entity_id"] + rest


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv_rows(columns: list[str], rows: list[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    known = set(columns)
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in known}
        writer.writerow(
            [_csv_value(row.get(column)) for column in columns]
            + [json.dumps(extra, ensure_ascii=False) if extra else ""]
        )
    return out.getvalue().encode()


async def _csv(batches: AsyncGenerator[list[Row]]) -> AsyncGenerator[bytes]:
    async with aclosing(batches):
        head: list[Row] = []
        async for batch in batches:
            head += batch
            if len(head) >= CHUNK_SIZE:
                break
        columns = _csv_columns(head)
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow([*columns, CSV_EXTRA])
        yield header.getvalue().encode() + _csv_rows(columns, head)
        del head
        async for batch in batches:
            yield _csv_rows(columns, batch)


async def _json_body(batches: AsyncGenerator[list[Row]]) -> AsyncGenerator[bytes]:
    async with aclosing(batches):
        async for batch in batches:
            yield _json_lines(batch)


def export_body(
    hass: HomeAssistant, data: Mapping[str, Any], query: ExportQuery
) -> AsyncGenerator[bytes]:
    """The response body, read from the entry's server as it is sent."""
    api_version = data[CONF_API_VERSION]
    if query.format == "parquet" and api_version != API_V3:
        raise BadRequest(
            "format=parquet is passed through from InfluxDB 3 only; "
            "for InfluxDB 1.x and 2.x use json or csv"
        )
    if api_version == API_V3 and query.measurement is None:
        raise BadRequest(
            "measurement is required with InfluxDB 3: its SQL reads one table "
            "(measurement) at a time"
        )
    if query.format == "parquet":
        return _v3_parquet(hass, data, query)
    source = {API_V1: _v1_batches, API_V2: _v2_batches}.get(api_version, _v3_batches)
    batches = _limited(source(hass, data, query), query.limit)
    return _csv(batches) if query.format == "csv" else _json_body(batches)


def _loaded_entry(hass: HomeAssistant, entry_id: str | None) -> ConfigEntry:
    loaded = [
        entry
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.state is ConfigEntryState.LOADED
    ]
    if entry_id is None:
        if len(loaded) != 1:
            raise BadRequest(
                f"config_entry_id is required: {len(loaded)} entries are loaded"
            )
        return loaded[0]
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise BadRequest(f"config_entry_id: no HA Ingestor entry {entry_id[:64]!r}")
    if entry not in loaded:
        raise BadRequest(f"config_entry_id: entry {entry_id!r} is not loaded")
    return entry


class ExportView(HomeAssistantView):
    """Stream an entry's points for a time range as JSON Lines, CSV or Parquet."""

    url = EXPORT_URL
    name = "api:ha_ingestor:export"
    requires_auth = True

    async def get(self, request: web.Request) -> web.StreamResponse:
        """Answer 400 with the reason, 502 when InfluxDB fails first, else stream."""
        hass = request.app[KEY_HASS]
        try:
            entry = _loaded_entry(hass, request.query.get("config_entry_id"))
            query = parse_query(request.query, request.query.getall("entity_id", []))
            body = export_body(hass, entry.data, query)
        except BadRequest as err:
            return web.Response(status=400, text=str(err))
        async with aclosing(body):
            try:
                # The first bytes before the status: an error here still has one.
                first = await anext(body, b"")
            except UpstreamError as err:
                return web.Response(status=502, text=f"InfluxDB: {err}")
            response = web.StreamResponse(
                headers={
                    "Content-Type": CONTENT_TYPES[query.format],
                    "Content-Disposition": (
                        "attachment; filename=ha_ingestor_export."
                        + ("jsonl" if query.format == "json" else query.format)
                    ),
                }
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(first)
            try:
                async for chunk in body:
                    await response.write(chunk)
            except UpstreamError as err:
                # Headers are sent: end the connection without the last chunk,
                # so the client sees an incomplete body, not a short export.
                LOGGER.warning("Export from %s stopped: %s", entry.title, err)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        return response

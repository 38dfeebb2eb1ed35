"""A small, faithful InfluxDB 2.x / 3 write server for the behaviour only those
servers have (no InfluxDB 2/3 can be installed here): token auth, unknown
bucket/database, whole-batch rejection (2.x) versus partial writes (3.x),
429/503 with Retry-After, and a slow server.

It follows the published API: ``POST /api/v2/write?org=&bucket=&precision=``
(``Authorization: Token …``; 204, 400 malformed, 401, 404, 422 schema conflict,
whole batch rejected), and ``POST /api/v3/write_lp?db=&precision=&accept_partial=``
(``Authorization: Bearer …``; 204, 400 partial write listing the refused lines,
401, 404). Everything else is left to the real servers the tests also run.

Reading back, for the export, reads the points stored by those writes:
``POST /api/v2/query?org=`` (Flux in a JSON body ``{"query": …, "type": "flux"}``
or as ``application/vnd.flux``; ``Authorization: Token …``; answers annotated CSV
as InfluxDB 2.x does: ``#datatype``/``#group``/``#default`` rows, a header, one
table per series, tables apart by an empty line, CRLF line ends) and
``GET|POST /api/v3/query_sql`` (``db``, ``q``, ``format=jsonl|csv|parquet``;
JSON Lines with null columns left out and ``time`` as Arrow shows a timestamp
without a zone, CSV with a header; for Parquet fixed bytes with the Parquet
magic, enough to check a pass-through). Only the narrow Flux and SQL that
``custom_components/ha_ingestor/export.py`` generates are understood; anything
else is answered 400, as a server answers a query it cannot compile.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
import io
import json
import math
import re
import ssl
from typing import Any

from aiohttp import web

_PRECISION_NS = {
    "ns": 1,
    "nanosecond": 1,
    "us": 1_000,
    "microsecond": 1_000,
    "ms": 1_000_000,
    "millisecond": 1_000_000,
    "s": 1_000_000_000,
    "second": 1_000_000_000,
    "auto": 1,
}


class LineError(ValueError):
    """A line that is not valid line protocol."""


@dataclass(frozen=True)
class Point:
    """One parsed point."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool | str]
    time_ns: int | None


def _split(text: str, separator: str, *, quotes: bool = False) -> list[str]:
    """Split on an unescaped separator (outside double quotes when asked)."""
    parts, current, index, quoted = [], [], 0, False
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if quotes and char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    if quoted:
        raise LineError("unterminated string")
    parts.append("".join(current))
    return parts


def _unescape(text: str, specials: str) -> str:
    out, index = [], 0
    while index < len(text):
        if (
            text[index] == "\\"
            and index + 1 < len(text)
            and text[index + 1] in specials
        ):
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _field_value(raw: str) -> float | int | bool | str:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise LineError("bad string field")
        return _unescape(raw[1:-1], '"\\')
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    value = float(raw)
    if math.isnan(value) or math.isinf(value):
        raise LineError("NaN or infinity")
    return value


def parse_line(line: str) -> Point:
    """Parse one line of line protocol (2.x rules), or raise LineError."""
    sections = _split(line, " ", quotes=True)
    if len(sections) not in (2, 3) or not sections[0] or not sections[1]:
        raise LineError("expected measurement, fields and optional timestamp")
    series = _split(sections[0], ",")
    measurement = _unescape(series[0], ", \\")
    if not measurement:
        raise LineError("missing measurement")
    tags = {}
    for pair in series[1:]:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise LineError("bad tag")
        tags[_unescape(key, ",= \\")] = _unescape(value, ",= \\")
    fields: dict[str, float | int | bool | str] = {}
    for pair in _split(sections[1], ",", quotes=True):
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise LineError("bad field")
        try:
            fields[_unescape(key, ",= \\")] = _field_value(value)
        except ValueError as err:
            raise LineError(f"bad field value {value!r}") from err
    time_ns = None
    if len(sections) == 3:
        try:
            time_ns = int(sections[2])
        except ValueError as err:
            raise LineError("bad timestamp") from err
    return Point(measurement, tags, fields, time_ns)


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    count: int


@dataclass
class FakeInfluxDB:
    """The fake server. Tests change its attributes between requests."""

    ssl_context: ssl.SSLContext | None = None
    tokens: set[str] = field(default_factory=set)
    orgs: dict[str, set[str]] = field(default_factory=dict)
    databases: set[str] = field(default_factory=set)
    delay: float = 0.0
    points: dict[str, list[Point]] = field(default_factory=dict)
    requests: int = 0
    # Lines in each non-empty write, in the order the writes arrived.
    batches: list[int] = field(default_factory=list)
    gzipped: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    _types: dict[tuple[str, str, str], type] = field(default_factory=dict)
    _series_times: dict[tuple[Any, ...], int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    def fail_next(
        self, status: int, *, retry_after: float | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` writes with ``status`` (and Retry-After)."""
        self._failures.append(_Failure(status, retry_after, count))

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v2/write", self._v2_write)
        app.router.add_post("/api/v3/write_lp", self._v3_write)
        app.router.add_post("/api/v2/query", self._v2_query)
        app.router.add_route("*", "/api/v3/query_sql", self._v3_query)
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def release(self) -> None:
        """Answer the requests a slow server is holding now (and later ones at once)."""
        self.delay = 0
        self._released.set()

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Influxdb-Version": "fake"})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "influxdb", "status": "pass"})

    def _authorized(self, request: web.Request, schemes: tuple[str, ...]) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme in schemes and token in self.tokens

    def v2_entry_data(self) -> dict[str, Any]:
        """Config entry data for its 2.x API: good token, ``home-org``, ``home``."""
        return {
            "api_version": "2",
            "url": self.url,
            "token": "good-token",
            "organization": "home-org",
            "bucket": "home",
            "verify_ssl": True,
        }

    def v3_entry_data(self) -> dict[str, Any]:
        """Config entry data for its 3 API: good token, database ``home``."""
        return {
            "api_version": "3",
            "url": self.url,
            "token": "good-token",
            "database": "home",
            "verify_ssl": True,
        }

    async def _common(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        if lines := [line for line in (await request.read()).split(b"\n") if line]:
            self.batches.append(len(lines))
        if self.delay:
            # A slow server; stop() releases the requests still waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.delay)
        if self._failures:
            failure = self._failures[0]
            failure.count -= 1
            if failure.count <= 0:
                self._failures.pop(0)
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(int(failure.retry_after))
            return web.json_response(
                {"code": "error", "message": f"injected {failure.status}"},
                status=failure.status,
                headers=headers,
            )
        return None

    async def _body_lines(self, request: web.Request) -> list[str]:
        # aiohttp's server has already undone a Content-Encoding, as InfluxDB does.
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            self.gzipped += 1
        return [line for line in body.decode().split("\n") if line.strip()]

    def _check_types(
        self, target: str, point: Point, batch: dict[tuple[str, str, str], type]
    ) -> str | None:
        """A schema conflict with stored data or earlier lines of the batch."""
        for key, value in point.fields.items():
            kind = type(value)
            slot = (target, point.measurement, key)
            known = self._types.get(slot) or batch.setdefault(slot, kind)
            if known is not None and known is not kind:
                return (
                    f'field type conflict: input field "{key}" on measurement '
                    f'"{point.measurement}" is type {kind.__name__}, already exists '
                    f"as type {known.__name__}"
                )
        return None

    def _store(self, target: str, point: Point, precision: int) -> None:
        for key, value in point.fields.items():
            self._types[(target, point.measurement, key)] = type(value)
        stored = self.points.setdefault(target, [])
        if point.time_ns is None:
            stored.append(point)
            return
        point = Point(
            point.measurement, point.tags, point.fields, point.time_ns * precision
        )
        # As InfluxDB does, a point with the series and time of a stored one
        # overwrites it (its fields merged over the stored ones).
        key = (
            target,
            point.measurement,
            tuple(sorted(point.tags.items())),
            point.time_ns,
        )
        if (index := self._series_times.get(key)) is not None:
            old = stored[index]
            stored[index] = Point(
                old.measurement, old.tags, old.fields | point.fields, old.time_ns
            )
            return
        self._series_times[key] = len(stored)
        stored.append(point)

    async def _v2_write(self, request: web.Request) -> web.Response:
        if (failed := await self._common(request)) is not None:
            return failed
        if not self._authorized(request, ("Token", "Bearer")):
            return web.json_response(
                {"code": "unauthorized", "message": "unauthorized access"}, status=401
            )
        org = request.query.get("org", "")
        bucket = request.query.get("bucket", "")
        if org not in self.orgs:
            return web.json_response(
                {
                    "code": "not found",
                    "message": f'organization name "{org}" not found',
                },
                status=404,
            )
        if bucket not in self.orgs[org]:
            return web.json_response(
                {"code": "not found", "message": f'bucket "{bucket}" not found'},
                status=404,
            )
        precision = _PRECISION_NS.get(request.query.get("precision", "ns"), 1)
        parsed: list[Point] = []
        batch: dict[tuple[str, str, str], type] = {}
        for number, line in enumerate(await self._body_lines(request), start=1):
            try:
                point = parse_line(line)
            except LineError as err:
                return web.json_response(
                    {
                        "code": "invalid",
                        "message": f"unable to parse '{line}': {err}",
                        "line": number,
                    },
                    status=400,
                )
            conflict = self._check_types(bucket, point, batch)
            if conflict is not None:
                # 2.x rejects the whole batch on the first schema conflict.
                return web.json_response(
                    {
                        "code": "unprocessable entity",
                        "message": conflict,
                        "line": number,
                    },
                    status=422,
                )
            parsed.append(point)
        for point in parsed:
            self._store(bucket, point, precision)
        return web.Response(status=204)

    async def _v3_write(self, request: web.Request) -> web.Response:
        if (failed := await self._common(request)) is not None:
            return failed
        if not self._authorized(request, ("Bearer", "Token")):
            return web.json_response(
                {"error": "the request was not authenticated", "data": None},
                status=401,
            )
        database = request.query.get("db", "")
        if database not in self.databases:
            return web.json_response(
                {"error": f"database not found: {database}", "data": None}, status=404
            )
        precision = _PRECISION_NS.get(request.query.get("precision", "auto"), 1)
        accept_partial = request.query.get("accept_partial", "true") != "false"
        good: list[Point] = []
        bad: list[dict[str, object]] = []
        batch: dict[tuple[str, str, str], type] = {}
        for number, line in enumerate(await self._body_lines(request), start=1):
            try:
                point = parse_line(line)
                conflict = self._check_types(database, point, batch)
                if conflict is not None:
                    raise LineError(conflict)
            except LineError as err:
                bad.append(
                    {
                        "original_line": line,
                        "line_number": number,
                        "error_message": str(err),
                    }
                )
                continue
            good.append(point)
            if accept_partial:
                self._store(database, point, precision)
        if bad:
            return web.json_response(
                {"error": "partial write of line protocol occurred", "data": bad},
                status=400,
            )
        if not accept_partial:
            for point in good:
                self._store(database, point, precision)
        return web.Response(status=204)

    async def _v2_query(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if not self._authorized(request, ("Token",)):
            return web.json_response(
                {"code": "unauthorized", "message": "unauthorized access"}, status=401
            )
        org = request.query.get("org", "")
        if org not in self.orgs:
            return web.json_response(
                {
                    "code": "not found",
                    "message": f'organization name "{org}" not found',
                },
                status=404,
            )
        if request.content_type == "application/vnd.flux":
            text = await request.text()
        else:
            body = await request.json()
            if body.get("type", "flux") != "flux":
                return web.json_response(
                    {"code": "invalid", "message": "unsupported query type"}, status=400
                )
            text = body["query"]
        if (match := _FLUX.match(text)) is None:
            return web.json_response(
                {"code": "invalid", "message": "compilation failed: unsupported query"},
                status=400,
            )
        bucket = _flux_unquote(match["bucket"])
        if bucket not in self.orgs[org]:
            return web.json_response(
                {
                    "code": "not found",
                    "message": "failed to initialize execute state: "
                    f'could not find bucket "{bucket}"',
                },
                status=404,
            )
        entity_ids = (
            {_flux_unquote(m) for m in re.findall(_FLUX_STRING, match["entities"])}
            if match["entities"]
            else None
        )
        points = _select(
            self.points.get(bucket, []),
            parse_rfc3339(match["start"]),
            parse_rfc3339(match["stop"]),
            _flux_unquote(match["measurement"]) if match["measurement"] else None,
            entity_ids,
        )
        tables: dict[tuple[Any, ...], list[Point]] = {}
        for point in points:
            key = (point.measurement, tuple(sorted(point.tags.items())))
            tables.setdefault(key, []).append(point)
        response = web.StreamResponse(
            headers={"Content-Type": "text/csv; charset=utf-8"}
        )
        await response.prepare(request)
        for number, (key, rows) in enumerate(sorted(tables.items())):
            rows.sort(key=lambda point: point.time_ns or 0)
            tag_keys = [tag for tag, _ in key[1]]
            kinds: dict[str, type] = {}
            for point in rows:
                for name, value in point.fields.items():
                    kinds.setdefault(name, type(value))
            fields = sorted(kinds)
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            if number:
                out.write("\r\n")
            writer.writerow(
                ["#datatype", "string", "long", "string"]
                + ["string"] * len(tag_keys)
                + ["dateTime:RFC3339"]
                + [_FLUX_TYPES[kinds[name]] for name in fields]
            )
            writer.writerow(
                ["#group", "false", "false", "true"]
                + ["true"] * len(tag_keys)
                + ["false"] * (1 + len(fields))
            )
            writer.writerow(
                ["#default", "_result"] + [""] * (3 + len(tag_keys) + len(fields))
            )
            writer.writerow(
                ["", "result", "table", "_measurement", *tag_keys, "_time", *fields]
            )
            for point in rows:
                writer.writerow(
                    ["", "", str(number), point.measurement]
                    + [point.tags[tag] for tag in tag_keys]
                    + [_format_time(point.time_ns or 0, arrow=False)]
                    + [
                        _flux_value(point.fields[name]) if name in point.fields else ""
                        for name in fields
                    ]
                )
            await response.write(out.getvalue().encode())
        await response.write_eof()
        return response

    async def _v3_query(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if not self._authorized(request, ("Bearer", "Token")):
            return web.json_response(
                {"error": "the request was not authenticated", "data": None}, status=401
            )
        params: dict[str, Any] = (
            dict(request.query) if request.method == "GET" else await request.json()
        )
        database = params.get("db", "")
        if database not in self.databases:
            return web.json_response(
                {"error": f"database not found: {database}", "data": None}, status=404
            )
        try:
            rows = self._sql_rows(database, params.get("q", ""))
        except _QueryError as err:
            return web.json_response(
                {"error": str(err), "data": None}, status=err.status
            )
        fmt = params.get("format", "json")
        if fmt == "parquet":
            return web.Response(
                body=PARQUET_BYTES, content_type="application/vnd.apache.parquet"
            )
        if fmt == "csv":
            columns = list(dict.fromkeys(key for row in rows for key in row))
            out = io.StringIO()
            writer = csv.DictWriter(out, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            return web.Response(text=out.getvalue(), content_type="text/csv")
        if fmt != "jsonl":
            return web.json_response(
                {"error": f"unsupported format {fmt!r}", "data": None}, status=400
            )
        response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
        await response.prepare(request)
        for row in rows:
            await response.write((json.dumps(row) + "\n").encode())
        await response.write_eof()
        return response

    def _sql_rows(self, database: str, query: str) -> list[dict[str, Any]]:
        """The rows of the narrow SQL the exporter sends, in table column order."""
        if (match := _SQL.match(query)) is None:
            raise _QueryError(400, "error while planning query: unsupported query")
        table = match["table"].replace('""', '"')
        stored = [p for p in self.points.get(database, []) if p.measurement == table]
        if not stored:
            raise _QueryError(
                400,
                "error while planning query: Error during planning: "
                f"table 'public.iox.{table}' not found",
            )
        tags = sorted({tag for point in stored for tag in point.tags})
        fields = sorted({name for point in stored for name in point.fields})
        entity_ids = None
        if match["ids"]:
            if "entity_id" not in tags:
                raise _QueryError(400, "Schema error: No field named entity_id.")
            entity_ids = {
                _sql_unquote(m) for m in re.findall(_SQL_STRING, match["ids"])
            }
        points = _select(
            stored,
            parse_rfc3339(_sql_unquote(match["start"])),
            parse_rfc3339(_sql_unquote(match["end"])),
            None,
            entity_ids,
        )
        points.sort(key=lambda point: point.time_ns or 0)
        rows = []
        for point in points[: int(match["limit"])]:
            row: dict[str, Any] = {t: point.tags[t] for t in tags if t in point.tags}
            row.update((f, point.fields[f]) for f in fields if f in point.fields)
            row["time"] = _format_time(point.time_ns or 0, arrow=True)
            rows.append(row)
        return rows


PARQUET_BYTES = b"PAR1 fake parquet body PAR1"

_FLUX_STRING = r'"(?:[^"\\]|\\.)*"'
_FLUX = re.compile(
    rf"from\(bucket: (?P<bucket>{_FLUX_STRING})\)\n"
    r"  \|> range\(start: (?P<start>\S+), stop: (?P<stop>\S+)\)\n"
    r"(?:  \|> filter\(fn: \(r\) => r\._measurement == "
    rf"(?P<measurement>{_FLUX_STRING})\)\n)?"
    rf"(?:  \|> filter\(fn: \(r\) => (?P<entities>r\.entity_id == {_FLUX_STRING}"
    rf"(?: or r\.entity_id == {_FLUX_STRING})*)\)\n)?"
    r'  \|> pivot\(rowKey: \["_time"\], columnKey: \["_field"\], '
    r'valueColumn: "_value"\)\n'
    r'  \|> drop\(columns: \["_start", "_stop"\]\)\Z'
)
_SQL_STRING = r"'(?:[^']|'')*'"
_SQL = re.compile(
    r'SELECT \* FROM "(?P<table>(?:[^"]|"")*)" '
    rf"WHERE time >= (?P<start>{_SQL_STRING}) AND time < (?P<end>{_SQL_STRING})"
    rf'(?: AND "entity_id" IN \((?P<ids>{_SQL_STRING}(?:, {_SQL_STRING})*)\))?'
    r" ORDER BY time LIMIT (?P<limit>\d+)\Z"
)
_FLUX_TYPES = {float: "double", int: "long", bool: "boolean", str: "string"}


def _flux_unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _sql_unquote(literal: str) -> str:
    return literal[1:-1].replace("''", "'")


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (fraction up to 9 digits)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", text)
    if match is None:
        raise ValueError(f"bad time {text!r}")
    seconds = datetime.fromisoformat(match[1]).replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((match[2] or "").ljust(9, "0"))


def _format_time(time_ns: int, *, arrow: bool) -> str:
    """RFC 3339 text of a time: as Go's RFC3339Nano (fraction trimmed, ``Z``), or
    as Arrow shows a timestamp without a zone (3, 6 or 9 digits, no zone)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}"
    if arrow:
        digits = next(n for n in (0, 3, 6, 9) if not int(fraction[n:] or 0))
        return text + ("." + fraction[:digits] if digits else "")
    return text + ("." + fraction.rstrip("0") if nanos else "") + "Z"


def _flux_value(value: float | int | bool | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _select(
    points: list[Point],
    start: int,
    end: int,
    measurement: str | None,
    entity_ids: set[str] | None,
) -> list[Point]:
    return [
        point
        for point in points
        if point.time_ns is not None
        and start <= point.time_ns < end
        and (measurement is None or point.measurement == measurement)
        and (entity_ids is None or point.tags.get("entity_id") in entity_ids)
    ]

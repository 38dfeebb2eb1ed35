"""How InfluxDB's answers map to what the pipeline does next."""

from __future__ import annotations

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest

from custom_components.ha_ingestor.const import BACKOFF_MAX
from custom_components.ha_ingestor.writer import (
    InvalidAuth,
    InvalidUrl,
    Rejected,
    RetryLater,
    TargetNotFound,
    WriteError,
    async_create_writer,
    parse_url,
    write_error,
)

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "message", "retry_after"),
    [
        (
            401,
            b'{"code":"unauthorized","message":"unauthorized access"}',
            {},
            InvalidAuth,
            "HTTP 401: unauthorized access",
            None,
        ),
        (403, b"forbidden", {}, InvalidAuth, "HTTP 403: forbidden", None),
        (
            404,
            b'{"error":"database not found: \\"x\\""}',
            {},
            TargetNotFound,
            'HTTP 404: database not found: "x"',
            None,
        ),
        (
            400,
            b'{"error":"partial write of line protocol occurred",'
            b'"data":[{"line_number":2}]}',
            {},
            Rejected,
            'HTTP 400: partial write of line protocol occurred: [{"line_number": 2}]',
            None,
        ),
        (422, b"", {}, Rejected, "HTTP 422: ", None),
        (
            429,
            b"slow down",
            {"Retry-After": "30"},
            RetryLater,
            "HTTP 429: slow down",
            30.0,
        ),
        (503, b"busy", {"Retry-After": "0"}, RetryLater, "HTTP 503: busy", 0.0),
        (500, b"\xff oops", {}, RetryLater, "HTTP 500: \ufffd oops", None),
        (
            500,
            b'{"error":"retention policy not found: short"}',
            {},
            TargetNotFound,
            "HTTP 500: retention policy not found: short",
            None,
        ),
        (
            503,
            b'{"error":"database not found: \\"x\\""}',
            {"Retry-After": "30"},
            TargetNotFound,
            'HTTP 503: database not found: "x"',
            None,
        ),
        (418, b"[1, 2]", {}, WriteError, "HTTP 418: [1, 2]", None),
    ],
)
def test_server_answers_map_to_the_next_step(
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: type[WriteError],
    message: str,
    retry_after: float | None,
) -> None:
    """Auth, missing target, refused lines, retry-later and the rest, with the
    server's own message and its Retry-After in seconds when it gives one."""
    error = write_error(status, body, headers)
    assert type(error) is kind
    assert str(error) == message
    assert getattr(error, "retry_after", None) == retry_after


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("86400", BACKOFF_MAX),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 120.0),
        ("Wed, 21 Oct 2026 07:28:00 -0000", 120.0),
        ("Thu, 22 Oct 2026 07:26:00 GMT", BACKOFF_MAX),
        ("Wed, 21 Oct 2026 07:00:00 GMT", 0.0),
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("1e400", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        ("Wed, 99 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_honoured_up_to_the_longest_backoff(
    freezer: FrozenDateTimeFactory, retry_after: str, seconds: float | None
) -> None:
    """Seconds and HTTP-dates (RFC 9110) count from now, at most five minutes; a
    date already past means now; anything else is ignored."""
    freezer.move_to("2026-10-21 07:26:00+00:00")
    error = write_error(503, b"busy", {"Retry-After": retry_after})
    assert isinstance(error, RetryLater)
    assert error.retry_after == seconds


async def test_missing_retention_policy_on_the_real_server_is_a_missing_target(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """InfluxDB 1.x answers a write to a dropped retention policy with HTTP 500:
    that is a missing target (a repair for the user), not a reason to retry."""
    influxdb_v1.query(
        "home", 'CREATE RETENTION POLICY "short" ON "home" DURATION 1h REPLICATION 1'
    )
    writer = await async_create_writer(
        hass,
        {
            "api_version": "1",
            "url": influxdb_v1.url,
            "database": "home",
            "username": influxdb_v1.admin_user,
            "password": influxdb_v1.admin_password,
            "retention_policy": "short",
        },
    )
    try:
        await writer.async_write(b"m v=1")
        assert influxdb_v1.rows("home", 'SELECT v FROM "short"."m"')[0]["v"] == 1
        influxdb_v1.query("home", 'DROP RETENTION POLICY "short" ON "home"')
        with pytest.raises(
            TargetNotFound, match=r"^HTTP 500: retention policy not found: short$"
        ):
            await writer.async_write(b"m v=2")
    finally:
        await writer.async_close()


@pytest.mark.parametrize("api_version", ["2", "3"])
async def test_credentials_in_an_old_url_stay_out_of_token_requests(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, api_version: str
) -> None:
    """An entry stored by an older release may hold userinfo in its URL: the token
    servers still get their writes (aiohttp refuses userinfo beside a token)."""
    data = (
        fake_influxdb.v2_entry_data()
        if api_version == "2"
        else fake_influxdb.v3_entry_data()
    )
    data["url"] = data["url"].replace("://", "://user:secret@")
    writer = await async_create_writer(hass, data)
    try:
        await writer.async_write(b"m v=1")
    finally:
        await writer.async_close()
    assert [point.fields for point in fake_influxdb.points["home"]] == [{"v": 1.0}]


@pytest.mark.parametrize(
    "url", ["influx:8086", "ftp://host", "http://", "http://[::1", "https:///path"]
)
def test_urls_without_scheme_or_host_are_refused(url: str) -> None:
    """Only http(s) URLs naming a host are accepted."""
    with pytest.raises(InvalidUrl):
        parse_url(url)


def test_url_keeps_a_path_prefix() -> None:
    """A server behind a reverse proxy path keeps it."""
    assert (
        str(parse_url(" https://proxy.local/influx/ ")) == "https://proxy.local/influx/"
    )

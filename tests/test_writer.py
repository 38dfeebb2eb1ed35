"""How InfluxDB's answers map to what the pipeline does next."""

from __future__ import annotations

import pytest

from custom_components.ha_ingestor.writer import (
    InvalidAuth,
    InvalidUrl,
    Rejected,
    RetryLater,
    TargetNotFound,
    WriteError,
    parse_url,
    write_error,
)


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
        (
            503,
            b"busy",
            {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"},
            RetryLater,
            "HTTP 503: busy",
            None,
        ),
        (500, b"\xff oops", {}, RetryLater, "HTTP 500: \ufffd oops", None),
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

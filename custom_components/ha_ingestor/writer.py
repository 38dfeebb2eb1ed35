"""Writers: deliver an encoded line-protocol body to InfluxDB 1.x, 2.x or 3.

Every server kind is written with Home Assistant's shared aiohttp session and
its documented HTTP write API (1.x ``/write``, 2.x ``/api/v2/write``, 3
``/api/v3/write_lp``). Each write is confirmed (the server answered 2xx) or
raises a :class:`WriteError` subclass that says what the caller should do next.
Error texts
carry the server's message and never a credential: v1 credentials travel in a basic
auth header (not the URL), tokens in the Authorization header.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import gzip
import json
import math
import ssl
from typing import Any

import aiohttp
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from yarl import URL

from .const import (
    API_V1,
    API_V2,
    BACKOFF_MAX,
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
    WRITE_TIMEOUT,
)

MAX_MESSAGE_LENGTH = 500
# With the ``compress`` option, bodies above this are gzipped, in the executor:
# compressing a large batch on the event loop would stall Home Assistant. It is off
# by default: on a local network gzip costs the HA host more CPU than the bytes it
# saves are worth (measured with benchmarks/scenario.py, runs interleaved: about
# 6 us of CPU per event at level 1); for a remote server (InfluxDB Cloud) it saves
# bandwidth.
GZIP_THRESHOLD = 64 * 1024


class WriteError(Exception):
    """A write did not succeed."""


class CannotConnect(WriteError):
    """The server could not be reached, or did not answer in time."""


class SslError(CannotConnect):
    """The TLS handshake failed (e.g. self-signed certificate without its CA)."""


class InvalidAuth(WriteError):
    """The server refused the credentials (401/403)."""


class TargetNotFound(WriteError):
    """The database, retention policy, bucket or organization does not exist."""


class RetryLater(WriteError):
    """The server is overloaded or failing (429, 5xx); try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(WriteError):
    """The server rejected some or all lines of the body (400, 413, 422)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class InvalidUrl(WriteError):
    """The URL is not an http(s) URL with a host."""


def parse_url(url: str) -> URL:
    """Return the server URL, or raise InvalidUrl for anything but http(s)://host."""
    try:
        parsed = URL(url.strip())
    except ValueError as err:
        raise InvalidUrl("not a URL") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidUrl("the URL must start with http:// or https:// and name a host")
    return parsed


def _server_message(body: bytes) -> str:
    """Pull InfluxDB's error message out of a response body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:MAX_MESSAGE_LENGTH]
    if isinstance(payload, dict):
        for key in ("error", "message"):
            if isinstance(payload.get(key), str):
                text = payload[key]
                if isinstance(payload.get("data"), list):
                    text = f"{text}: {json.dumps(payload['data'])}"
                break
    return text[:MAX_MESSAGE_LENGTH]


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP-date).

    Capped at the pipeline's longest backoff: one answer must not stop writes for a
    day. A value that is not a finite, non-negative delay is ignored.
    """
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    try:
        delay = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322
            moment = moment.replace(tzinfo=UTC)
        delay = max(0.0, (moment - datetime.now(UTC)).total_seconds())
    if not math.isfinite(delay) or delay < 0:
        return None
    return min(delay, BACKOFF_MAX)


# InfluxDB 1.x answers a write to a missing retention policy with HTTP 500
# (measured on 1.6.7); a 5xx naming a missing database is taken alike. Retrying
# cannot help: the user must create it.
_TARGET_MISSING = ("database not found", "retention policy not found")


def write_error(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> WriteError:
    """Map an InfluxDB write response that is not a success to its WriteError."""
    server_message = _server_message(body)
    message = f"HTTP {status}: {server_message}"
    if status in (401, 403):
        return InvalidAuth(message)
    if status == 404:
        return TargetNotFound(message)
    if status in (400, 413, 422):
        return Rejected(message, status)
    if status >= 500 and any(
        text in server_message.lower() for text in _TARGET_MISSING
    ):
        return TargetNotFound(message)
    if status == 429 or status >= 500:
        return RetryLater(message, _retry_after(headers))
    return WriteError(message)


async def async_ssl_context(
    hass: HomeAssistant, verify_ssl: bool, ca_cert: str | None
) -> ssl.SSLContext | bool:
    """Return what aiohttp's ``ssl=`` takes for these settings.

    Loading a CA file is blocking I/O, so a custom context is built in the executor.
    """
    if not verify_ssl:
        return False
    if not ca_cert:
        return True

    def _load() -> ssl.SSLContext:
        # A context of our own: Home Assistant's client contexts are shared (and
        # cached on older releases), so loading a CA into one would make every
        # integration trust it.
        return ssl.create_default_context(cafile=ca_cert)

    try:
        return await hass.async_add_executor_job(_load)
    except (OSError, ssl.SSLError) as err:
        raise SslError(f"cannot load CA certificate: {err.strerror or err}") from err


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=1)


class InfluxWriter(ABC):
    """Writes line-protocol bodies to one InfluxDB target."""

    def __init__(self, hass: HomeAssistant) -> None:
        self._hass = hass
        self.compress = False
        # What the server says it is (InfluxDB 1.x and 2.x send it with every
        # answer), for the device and system health; None until it answered.
        self.server_version: str | None = None

    async def async_write(self, body: bytes) -> None:
        """Write the body; return once the server confirmed it, or raise WriteError."""
        if self.compress and len(body) > GZIP_THRESHOLD:
            compressed = await self._hass.async_add_executor_job(_gzip, body)
            await self._async_post(compressed, "gzip")
        else:
            await self._async_post(body, None)

    @abstractmethod
    async def _async_post(self, body: bytes, encoding: str | None) -> None:
        """Send the (possibly compressed) body."""

    async def async_close(self) -> None:
        """Release connections this writer owns."""


class HttpWriter(InfluxWriter):
    """Writes with Home Assistant's shared aiohttp session."""

    def __init__(
        self,
        hass: HomeAssistant,
        session: aiohttp.ClientSession,
        url: str,
        params: dict[str, str],
        headers: dict[str, str],
        ssl_setting: ssl.SSLContext | bool,
    ) -> None:
        super().__init__(hass)
        self._session = session
        self._url = url
        self._params = params
        self._headers = headers
        self._ssl = ssl_setting
        self._timeout = aiohttp.ClientTimeout(total=WRITE_TIMEOUT)

    def _request(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """The body and headers to send for a body (a hook for other formats)."""
        return body, self._headers

    async def _async_post(self, body: bytes, encoding: str | None) -> None:
        body, headers = self._request(body)
        if encoding:
            headers = headers | {"Content-Encoding": encoding}
        try:
            async with self._session.post(
                self._url,
                params=self._params,
                data=body,
                headers=headers,
                ssl=self._ssl,
                timeout=self._timeout,
            ) as response:
                payload = await response.read()
                if version := response.headers.get("X-Influxdb-Version"):
                    self.server_version = version
                if response.status >= 300:
                    raise write_error(response.status, payload, response.headers)
        except aiohttp.ClientSSLError as err:
            raise SslError(f"TLS error: {type(err).__name__}") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CannotConnect(f"cannot reach server: {type(err).__name__}") from err


async def async_create_writer(
    hass: HomeAssistant, data: Mapping[str, Any]
) -> InfluxWriter:
    """Build the writer for a config entry's data."""
    url = parse_url(data[CONF_URL])
    # Entries stored by older releases may hold credentials in the URL; they never
    # go in a request line (aiohttp also refuses them beside an Authorization
    # header). For 1.x they stand in for empty credential fields, as they used to.
    url_user, url_password = url.user, url.password
    url = url.with_user(None)
    ssl_setting = await async_ssl_context(
        hass, data.get(CONF_VERIFY_SSL, True), data.get(CONF_SSL_CA_CERT)
    )
    api_version = data[CONF_API_VERSION]
    session = async_get_clientsession(hass, verify_ssl=data.get(CONF_VERIFY_SSL, True))
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if api_version == API_V1:
        params = {"db": data[CONF_DATABASE], "precision": "ns"}
        if data.get(CONF_RETENTION_POLICY):
            params["rp"] = data[CONF_RETENTION_POLICY]
        username = data.get(CONF_USERNAME) or url_user
        password = data.get(CONF_PASSWORD) or url_password
        if username:
            credentials = f"{username}:{password or ''}"
            headers["Authorization"] = "Basic " + base64.b64encode(
                credentials.encode()
            ).decode("ascii")
        return HttpWriter(
            hass, session, str(url / "write"), params, headers, ssl_setting
        )

    if api_version == API_V2:
        # The documented 2.x write API; InfluxDB 3 and Cloud accept it too.
        headers["Authorization"] = f"Token {data[CONF_TOKEN]}"
        return HttpWriter(
            hass,
            session,
            str(url / "api" / "v2" / "write"),
            {
                "org": data[CONF_ORGANIZATION],
                "bucket": data[CONF_BUCKET],
                "precision": "ns",
            },
            headers,
            ssl_setting,
        )

    params = {"db": data[CONF_DATABASE], "precision": "nanosecond"}
    headers["Authorization"] = f"Bearer {data[CONF_TOKEN]}"
    return HttpWriter(
        hass,
        session,
        str(url / "api" / "v3" / "write_lp"),
        params,
        headers,
        ssl_setting,
    )

"""The InfluxDB 2.x writer, with influxdb-client's async client.

A module of its own so that only 2.x entries import influxdb-client (about 30 MB of
memory once loaded); ``writer.async_create_writer`` imports it when needed.
"""

from __future__ import annotations

from collections.abc import Mapping
import ssl
from typing import Any

import aiohttp
from homeassistant.core import HomeAssistant
from homeassistant.util.ssl import get_default_context, get_default_no_verify_context
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from .const import CONF_BUCKET, CONF_ORGANIZATION, CONF_TOKEN, WRITE_TIMEOUT
from .writer import CannotConnect, InfluxWriter, SslError, write_error


class V2Writer(InfluxWriter):
    """InfluxDB 2.x (and 3.x's v2-compatible API) via influxdb-client's async client.

    The library builds its own aiohttp session (it cannot take Home Assistant's), so
    it is closed with the writer.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        client: InfluxDBClientAsync,
        bucket: str,
        organization: str,
    ) -> None:
        super().__init__(hass)
        self._client = client
        # The write service is the client's own, used directly so a pre-compressed
        # body can carry its Content-Encoding.
        self._service = WriteService(client.api_client)  # type: ignore[no-untyped-call]
        self._bucket = bucket
        self._organization = organization

    async def _async_post(self, body: bytes, encoding: str | None) -> None:
        extra = {"content_encoding": encoding} if encoding else {}
        try:
            await self._service.post_write_async(  # type: ignore[no-untyped-call]
                org=self._organization,
                bucket=self._bucket,
                body=body,
                precision="ns",
                content_type="text/plain; charset=utf-8",
                _return_http_data_only=False,
                **extra,
            )
        except ApiException as err:
            body = err.body if isinstance(err.body, bytes) else str(err.body).encode()
            raise write_error(int(err.status or 0), body, err.headers) from err
        except aiohttp.ClientSSLError as err:
            raise SslError(f"TLS error: {type(err).__name__}") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CannotConnect(f"cannot reach server: {type(err).__name__}") from err

    async def async_close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def create_v2_writer(
    hass: HomeAssistant,
    data: Mapping[str, Any],
    url: str,
    ssl_setting: ssl.SSLContext | bool,
) -> V2Writer:
    """The writer for a 2.x config entry's data."""
    if isinstance(ssl_setting, ssl.SSLContext):
        context = ssl_setting
    elif ssl_setting:
        context = get_default_context()
    else:
        context = get_default_no_verify_context()
    client = InfluxDBClientAsync(
        url=url,
        token=data[CONF_TOKEN],
        org=data[CONF_ORGANIZATION],
        timeout=int(WRITE_TIMEOUT * 1000),
        ssl_context=context,
    )
    return V2Writer(hass, client, data[CONF_BUCKET], data[CONF_ORGANIZATION])

"""The webhook sink's writer: batches of enriched events POSTed as a JSON array,
signed so the receiver can check who sent them and reject replays.

It is a writer like InfluxDB's, behind the same pipeline (batching, retries,
backoff, spool, dead letters): the queue holds one compact JSON object per line,
and a batch's lines become the array's items. The signature header follows the
convention Stripe and others use: ``X-HA-Ingestor-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<body>">``, computed afresh for every attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

import aiohttp
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .writer import HttpWriter, parse_url

SIGNATURE_HEADER: Final = "X-HA-Ingestor-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for a body sent at ``timestamp`` (Unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def json_array(body: bytes) -> bytes:
    """A batch body (compact JSON objects, one a line) as one JSON array. Compact
    JSON escapes every newline inside strings, so each newline separates items;
    a batch taken from memory ends with one, which separates nothing."""
    return b"[" + body.rstrip(b"\n").replace(b"\n", b",") + b"]"


class WebhookWriter(HttpWriter):
    """POSTs signed batches to the user's webhook with HA's shared session.

    An empty body (the pipeline's connection probe) is sent as ``[]``. The
    answers map as InfluxDB's do: 2xx confirms, 401/403 stops until the options
    change, 400/413/422 splits the batch down to dead letters, 429 and 5xx back
    off (honouring a capped ``Retry-After``).
    """

    def __init__(
        self,
        hass: HomeAssistant,
        session: aiohttp.ClientSession,
        url: str,
        secret: str,
    ) -> None:
        super().__init__(
            hass, session, url, {}, {"Content-Type": "application/json"}, True
        )
        self._secret = secret

    def _request(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """The batch as a JSON array, signed at this attempt's time."""
        payload = json_array(body) if body else b"[]"
        stamp = signature(self._secret, int(time.time()), payload)
        return payload, self._headers | {SIGNATURE_HEADER: stamp}


def create_webhook_writer(hass: HomeAssistant, url: str, secret: str) -> WebhookWriter:
    """The writer for the webhook options (the URL is checked by the options flow
    and again here: a URL's credentials never go in a request line)."""
    parsed = parse_url(url)
    return WebhookWriter(
        hass, async_get_clientsession(hass), str(parsed.with_user(None)), secret
    )

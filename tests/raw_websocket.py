"""A bare WebSocket client over asyncio streams, for a subscriber that stops
reading: its stream reader stops taking bytes at its limit, so the socket fills
up and the server sees a slow client, as with a stalled client on a network
(aiohttp's own client reads everything into memory as it comes)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

LIMIT = 2**16


class RawWebSocket:
    """Text frames out (masked, as a client must), text frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, port: int, path: str) -> RawWebSocket:
        """Open and upgrade a connection to 127.0.0.1:port."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=LIMIT)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send_json(self, data: dict[str, Any]) -> None:
        """Send one masked text frame."""
        payload = json.dumps(data).encode()
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81])
        if length < 126:
            header += bytes([0x80 | length])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self._writer.write(header + mask + masked)
        await self._writer.drain()

    async def receive_json(self) -> Any:
        """Read one (unfragmented, unmasked) text frame."""
        first, second = await self._reader.readexactly(2)
        assert first & 0x0F == 0x1, first
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
        return json.loads(await self._reader.readexactly(length))

    async def close(self) -> None:
        """Drop the connection."""
        self._writer.close()
        await self._writer.wait_closed()

"""A misbehaving HTTP proxy in front of a real server: it forwards every request
as it is, except the ones it was told to answer itself (e.g. a 503 with a
``Retry-After`` a load balancer might send)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from .local_http import LocalHttpServer


@dataclass(kw_only=True)
class FaultyProxy(LocalHttpServer):
    """Forwards to ``upstream``; answers the next requests from ``faults``."""

    upstream: str
    faults: deque[tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    forwarded: int = 0
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def fail_next(
        self, status: int, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Answer the next request with this response instead of forwarding it."""
        self.faults.append((status, headers or {}, body))

    def routes(self, app: web.Application) -> None:
        """Every path is forwarded (or answered from ``faults``)."""
        app.router.add_route("*", "/{path:.*}", self._handle)

    async def start(self) -> None:
        """Listen on 127.0.0.1."""
        self._session = aiohttp.ClientSession()
        await super().start()

    async def stop(self) -> None:
        """Stop listening and close the upstream session."""
        await super().stop()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.faults:
            status, headers, text = self.faults.popleft()
            return web.Response(status=status, headers=headers, body=text)
        assert self._session is not None
        self.forwarded += 1
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() in ("authorization", "content-type", "content-encoding")
        }
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.rel_url}",
            data=body,
            headers=headers,
        ) as response:
            return web.Response(
                status=response.status,
                body=await response.read(),
                content_type=response.content_type,
            )

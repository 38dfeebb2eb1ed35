"""A local aiohttp server for the tests' HTTP peers (a faulty proxy, a webhook
receiver): started on 127.0.0.1 at a free port, stoppable and startable again on
the same port."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .servers import free_port


@dataclass
class LocalHttpServer:
    """Serves ``routes()`` on 127.0.0.1 at ``port``."""

    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        """Add the server's routes."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen (again) on the same port."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

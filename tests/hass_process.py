"""A real Home Assistant process with its UI, for the demo and the browser test.

``python -m homeassistant`` from the running virtualenv, in a fresh configuration
directory with this repository's integration linked in, on a free 127.0.0.1 port.
:class:`HomeAssistantClient` does through Home Assistant's own REST and WebSocket
APIs what a person does on a new install's first screens: onboarding, and
confirming the HTTP configuration (Home Assistant otherwise reverts it after five
minutes and restarts).
"""

from __future__ import annotations

from pathlib import Path
import sys
import time
from typing import TYPE_CHECKING, Any, Final
import urllib.request

import aiohttp

from .servers import _Server

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

ROOT: Final = Path(__file__).resolve().parent.parent
# Debian's Chromium, headless, talking to nothing but the pages it is sent to.
CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# The state entity_states() reports for an entity that is off in the registry.
DISABLED: Final = "(disabled)"
# Seconds a WebSocket connection is kept unused (Home Assistant pings every 55 s).
WS_IDLE: Final = 30.0
OWNER: Final = {"name": "Demo", "username": "demo", "password": "demo-password"}

# Location, country and currency set here leave no onboarding screen or repair
# asking for them.
CONFIGURATION: Final = """\
homeassistant:
  name: HA Ingestor demo
  latitude: 52.3731
  longitude: 4.8922
  elevation: 0
  time_zone: Europe/Amsterdam
  unit_system: metric
  country: NL
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
auth:
config:
onboarding:
diagnostics:
logger:
  default: warning
  logs:
    custom_components.ha_ingestor: info
"""


class HomeAssistantProcess(_Server):
    """``hass`` from this virtualenv; started, stopped by its pid and cleaned up
    like the tests' servers. ``configuration`` is appended to
    :data:`CONFIGURATION`."""

    name = "hass"
    startup_timeout = 180.0
    stop_timeout = 60.0

    def __init__(self, configuration: str = "") -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        components = self.tmp / "custom_components"
        components.mkdir()
        (components / "ha_ingestor").symlink_to(
            ROOT / "custom_components" / "ha_ingestor"
        )
        (self.tmp / "configuration.yaml").write_text(
            CONFIGURATION.format(port=self.port) + configuration
        )

    def _command(self) -> list[str]:
        # --skip-pip: the virtualenv already has every requirement
        # (demo/hass_requirements.py lists what Home Assistant's own integrations
        # need).
        return [
            sys.executable,
            "-m",
            "homeassistant",
            "-c",
            str(self.tmp),
            "--skip-pip",
        ]

    def _ready(self) -> bool:
        # Onboarding answers once the HTTP server is up, before anyone logs in.
        with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2):
            return True

    def remove_http_yaml(self) -> None:
        """Drop the ``http:`` block: once in storage, Home Assistant ignores it."""
        path = self.tmp / "configuration.yaml"
        kept = []
        in_http = False
        for line in path.read_text().splitlines(keepends=True):
            if not line.startswith(" "):
                in_http = line.startswith("http:")
            if not in_http:
                kept.append(line)
        path.write_text("".join(kept))

    @property
    def exit_code(self) -> int | None:
        """The exit status once ``hass`` has exited by itself, else None."""
        return None if self.process is None else self.process.poll()

    def log_tail(self, characters: int = 3000) -> str:
        return self._log.read_text(errors="replace")[-characters:]


class HomeAssistantClient:
    """Home Assistant's REST and WebSocket APIs, as the frontend uses them."""

    def __init__(
        self, session: aiohttp.ClientSession, hass: HomeAssistantProcess
    ) -> None:
        self.session = session
        self.hass = hass
        self.url = url = hass.url
        self.client_id = f"{url}/"
        self.token = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._used = 0.0
        self._id = 0

    async def onboard(self) -> None:
        """Every onboarding step, as a new install's first screens do them: the
        owner, the location (already in the configuration), analytics (left off)
        and the integrations screen; then confirm the HTTP configuration."""
        async with self.session.post(
            f"{self.url}/api/onboarding/users",
            json={**OWNER, "client_id": self.client_id, "language": "en"},
        ) as response:
            response.raise_for_status()
            code = (await response.json())["auth_code"]
        async with self.session.post(
            f"{self.url}/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self.client_id,
            },
        ) as response:
            response.raise_for_status()
            self.token = (await response.json())["access_token"]
        await self.rest("POST", "/api/onboarding/core_config")
        await self.rest("POST", "/api/onboarding/analytics")
        await self.rest(
            "POST",
            "/api/onboarding/integration",
            {
                "client_id": self.client_id,
                "redirect_uri": f"{self.url}/?auth_callback=1",
            },
        )
        await self.confirm_http_config()

    async def confirm_http_config(self) -> None:
        """Promote the HTTP configuration this start tries (the YAML's, moved to
        storage) to the stable one, as the UI's confirmation dialog does; then do
        what the repair about the moved YAML asks: remove it (the repair goes at
        the next start, so it is dismissed for this one)."""
        config = await self.ws("http/config")
        if config["pending"] is not None and config["pending"]["error"] is None:
            await self.ws("http/config/promote")
        self.hass.remove_http_yaml()
        issues = await self.ws("repairs/list_issues")
        for issue in issues["issues"]:
            if issue["domain"] == "http" and issue["issue_id"] == "deprecated_yaml":
                await self.ws(
                    "repairs/ignore_issue",
                    domain="http",
                    issue_id="deprecated_yaml",
                    ignore=True,
                )

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {await response.text()}")
            return await response.json()

    async def config_flow(self, handler: str, *steps: dict[str, Any]) -> str:
        """Run a config flow through its steps; the new entry's id."""
        return await self._flow("/api/config/config_entries/flow", handler, steps)

    async def options_flow(self, entry_id: str, *steps: dict[str, Any]) -> None:
        await self._flow("/api/config/config_entries/options/flow", entry_id, steps)

    async def _flow(
        self, path: str, handler: str, steps: tuple[dict[str, Any], ...]
    ) -> str:
        """Each step's values go where its form has them (sections too), as the
        UI sends them."""
        result = await self.rest("POST", path, {"handler": handler})
        for step in steps:
            body = (
                fit_to_form(result["data_schema"], step)
                if result["type"] == "form"
                else step
            )
            result = await self.rest("POST", f"{path}/{result['flow_id']}", body)
            if result.get("errors"):
                raise RuntimeError(f"{handler} flow: {result['errors']}")
        if result["type"] != "create_entry":
            raise RuntimeError(f"{handler} flow did not finish: {result}")
        # A config flow's result is the new entry; an options flow's is not.
        entry = result.get("result")
        return str(entry["entry_id"]) if isinstance(entry, dict) else ""

    async def ws(self, command: str, **data: Any) -> Any:
        # Home Assistant drops a connection that leaves its heartbeat pings
        # unanswered; this one reads only while it waits for a result, so an idle
        # connection is replaced rather than found closed.
        if self._ws is not None and (
            self._ws.closed or time.monotonic() - self._used > WS_IDLE
        ):
            await self.close()
        self._used = time.monotonic()
        if self._ws is None:
            self._ws = await self.session.ws_connect(f"{self.url}/api/websocket")
            await self._ws.receive_json()  # auth_required
            await self._ws.send_json({"type": "auth", "access_token": self.token})
            if (await self._ws.receive_json())["type"] != "auth_ok":
                raise RuntimeError("WebSocket authentication failed")
        self._id += 1
        await self._ws.send_json({"id": self._id, "type": command, **data})
        while True:
            message = await self._ws.receive_json()
            if message.get("id") == self._id:
                if not message["success"]:
                    raise RuntimeError(f"{command}: {message['error']}")
                return message.get("result")

    async def entity_states(self, entry_id: str) -> list[tuple[str, str, str]]:
        """The entry's entities as (entity id, state, unit), in registry order."""
        entities = [
            entity["entity_id"]
            for entity in await self.ws("config/entity_registry/list")
            if entity["config_entry_id"] == entry_id
        ]
        states = {state["entity_id"]: state for state in await self.ws("get_states")}
        return [
            (
                entity_id,
                states[entity_id]["state"] if entity_id in states else DISABLED,
                states.get(entity_id, {})
                .get("attributes", {})
                .get("unit_of_measurement", ""),
            )
            for entity_id in entities
        ]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None


def fit_to_form(schema: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """Flat values nested the way a form's serialized schema has its fields: a
    collapsible section is a dict of its own (a value for a section's name is
    taken as it is)."""
    placed: set[str] = set()

    def nest(fields: list[dict[str, Any]]) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for field in fields:
            if field["name"] in values:
                nested[field["name"]] = values[field["name"]]
                placed.add(field["name"])
            elif field.get("type") == "expandable":
                nested[field["name"]] = nest(field["schema"])
        return nested

    fitted = nest(schema)
    if unknown := set(values) - placed:
        raise ValueError(f"not in the form: {sorted(unknown)}")
    return fitted


def launch_chromium(
    playwright: Playwright, user_data_dir: Path, *, width: int = 1280, height: int = 900
) -> BrowserContext:
    """Debian's Chromium with a fresh profile (never a browser Playwright
    downloads)."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=CHROMIUM,
        args=list(CHROMIUM_ARGS),
        headless=True,
        viewport={"width": width, "height": height},
        locale="en-US",
        timezone_id="Europe/Amsterdam",
    )


def log_in(page: Page, url: str) -> None:
    """The login screen, as the owner."""
    page.goto(url)
    page.locator("input[name=username]").fill(OWNER["username"])
    page.locator("input[name=password]").fill(OWNER["password"])
    page.keyboard.press("Enter")
    # Logged in once the app shell (its sidebar) is up, whatever the default page.
    page.locator("ha-sidebar").wait_for()

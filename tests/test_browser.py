"""HA Ingestor in Home Assistant's own UI: a real Chromium, a real ``hass``, a real
InfluxDB 1.x.

A person's path through it: log in, add HA Ingestor from the integrations page
(a wrong URL first: the error shows on the URL field), open its device and see its
health sensors report, then change an option and see it kept. Fields are found by
their names in the flow's schema and texts come from the integration's own
translations, so the test follows the flow rather than its wording. A failing step
leaves a screenshot, named in the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
import json
from pathlib import Path
import re
from typing import Any

import aiohttp
import pytest

from .hass_process import (
    ROOT,
    HomeAssistantClient,
    HomeAssistantProcess,
    launch_chromium,
    log_in,
)
from .servers import InfluxDB1Server, free_port

# Playwright is in the newest Home Assistant's test toolchain only.
pytest.importorskip("playwright")
from playwright.sync_api import (
    ElementHandle,
    Locator,
    Page,
    expect,
    sync_playwright,
)

pytestmark = pytest.mark.browser

INTEGRATION = ROOT / "custom_components" / "ha_ingestor"
TEXTS: dict[str, Any] = json.loads(
    (INTEGRATION / "translations" / "en.json").read_text()
)
NAME = json.loads((INTEGRATION / "manifest.json").read_text())["name"]
# Playwright's own default is 30 s; a step of this UI takes well under a second.
TIMEOUT_MS = 15_000
# The device's sensors refresh every 30 s; the first refresh may just have passed.
SENSOR_TIMEOUT_MS = 70_000

# ha-form's fields carry their schema key as the ``name`` property of the
# <ha-selector> (not as an attribute), inside shadow roots.
FIND_FIELD = """name => {
  const search = root => {
    for (const element of root.querySelectorAll("*")) {
      if (element.tagName === "HA-SELECTOR" && element.name === name) return element;
      const found = element.shadowRoot && search(element.shadowRoot);
      if (found) return found;
    }
    return null;
  };
  return search(document);
}"""
# ha-form shows a field's error as the <ha-alert> right before the field.
FIELD_ERROR = """field => {
  const before = field.previousElementSibling;
  return before && before.tagName === "HA-ALERT" ? before.textContent.trim() : "";
}"""
# The same, looking the field up on every call: a form that answers a submit is
# rendered anew, so an element found before the answer may be gone.
NAMED_FIELD_ERROR = f"""name => {{
  const field = ({FIND_FIELD})(name);
  return field ? ({FIELD_ERROR})(field) : "";
}}"""
# The collapsed section (an <ha-expansion-panel>) a field is in, if any.
COLLAPSED_SECTION = """field => {
  for (let node = field; node; node = node.parentNode || node.host) {
    if (node.tagName === "HA-EXPANSION-PANEL" && !node.expanded) {
      return node.shadowRoot.querySelector("#summary");
    }
  }
  return null;
}"""


@pytest.fixture
def hass_ui(influxdb_v1: InfluxDB1Server) -> Iterator[HomeAssistantProcess]:
    """A real ``hass`` of this test's own, onboarded, with its UI."""
    hass = HomeAssistantProcess()
    try:
        hass.start()
        asyncio.run(_onboard(hass))
        yield hass
    finally:
        hass.cleanup()


async def _onboard(hass: HomeAssistantProcess) -> None:
    async with aiohttp.ClientSession() as session:
        client = HomeAssistantClient(session, hass)
        try:
            await client.onboard()
        finally:
            await client.close()


@pytest.fixture
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A page in Debian's Chromium, with a fresh profile."""
    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp_path_factory.mktemp("chromium"))
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


class Steps:
    """Names the step that failed and keeps a screenshot of it."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            shot = self.folder / f"{re.sub(r'\W+', '_', name)}.png"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=shot, full_page=True)
            raise AssertionError(
                f"step {name!r} failed at {self.page.url}; screenshot: {shot}"
            ) from err


def field(page: Page, name: str) -> ElementHandle:
    """The form field for a schema key, its section opened if it was collapsed."""
    handle = page.wait_for_function(FIND_FIELD, arg=name).as_element()
    assert handle is not None, f"no field {name!r}"
    summary = handle.evaluate_handle(COLLAPSED_SECTION).as_element()
    if summary is not None:
        summary.click()
    return handle


def fill(page: Page, name: str, value: str) -> None:
    input_ = field(page, name).wait_for_selector("input")
    assert input_ is not None
    input_.fill(value)


def sensor_row(page: Page, platform: str, key: str) -> Locator:
    """The device page's row for one of HA Ingestor's entities, by its name."""
    name = TEXTS["entity"][platform][key]["name"]
    return page.locator("hui-generic-entity-row").filter(
        has=page.locator(f'.info[title="{name}"]')
    )


def wait_for_state(row: Locator, pattern: str, timeout: float = TIMEOUT_MS) -> str:
    """The state a row shows (its light DOM; the name is in its shadow root),
    once it matches ``pattern``."""
    handle = row.element_handle()
    row.page.wait_for_function(
        "([row, pattern]) => new RegExp(pattern).test(row.textContent.trim())",
        arg=[handle, pattern],
        timeout=timeout,
    )
    return str(handle.evaluate("row => row.textContent.trim()"))


def test_add_configure_and_watch_ha_ingestor_in_the_ui(
    hass_ui: HomeAssistantProcess,
    influxdb_v1: InfluxDB1Server,
    page: Page,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    step = Steps(page, tmp_path_factory.mktemp("screenshots"))
    url = hass_ui.url

    with step("log in"):
        log_in(page, url)

    with step("find HA Ingestor among the integrations"):
        page.goto(f"{url}/config/integrations/dashboard")
        page.get_by_role("button", name="Add integration").click()
        page.locator("ha-dialog").get_by_role("textbox").fill(NAME)
        page.get_by_text(NAME, exact=True).click()

    with step("choose InfluxDB 1.x"):
        menu = TEXTS["config"]["step"]["user"]["menu_options"]
        page.get_by_text(menu["v1"], exact=True).click()

    with step("a wrong URL shows the error on the URL field"):
        fill(page, "url", f"http://127.0.0.1:{free_port()}")
        fill(page, "database", "home")
        fill(page, "username", influxdb_v1.admin_user)
        fill(page, "password", influxdb_v1.admin_password)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_function(NAMED_FIELD_ERROR, arg="url")
        assert (
            page.evaluate(NAMED_FIELD_ERROR, "url")
            == TEXTS["config"]["error"]["cannot_connect"]
        )
        assert field(page, "database").evaluate(FIELD_ERROR) == ""

    with step("the right URL creates the entry"):
        fill(page, "url", influxdb_v1.url)
        page.get_by_role("button", name="Submit").click()
        page.get_by_role("button", name=re.compile("finish", re.IGNORECASE)).click()
        expect(page.get_by_role("dialog")).to_have_count(0)

    with step("the device shows its health sensors with values"):
        page.goto(f"{url}/config/integrations/integration/ha_ingestor")
        page.locator('a[href^="/config/devices/device/"]').first.click()
        for key in ("events_received", "points_dropped", "spool_points"):
            wait_for_state(sensor_row(page, "sensor", key), r"^\d")
        # Counting, and connected, once the sensors refreshed after the first
        # confirmed write.
        wait_for_state(
            sensor_row(page, "sensor", "points_written"),
            r"^[1-9]",
            timeout=SENSOR_TIMEOUT_MS,
        )
        assert (
            wait_for_state(sensor_row(page, "binary_sensor", "connected"), r"\S")
            == "Connected"
        )

    with step("an option changed in the options flow is kept"):
        page.goto(f"{url}/config/integrations/integration/ha_ingestor")
        page.get_by_role("button", name="Configure").click()
        # In a section that opens collapsed.
        fill(page, "flush_interval", "2.5")
        page.get_by_role("button", name="Submit").click()
        page.get_by_role("button", name=re.compile("finish", re.IGNORECASE)).click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        page.get_by_role("button", name="Configure").click()
        input_ = field(page, "flush_interval").wait_for_selector("input")
        assert input_ is not None
        assert input_.input_value() == "2.5"

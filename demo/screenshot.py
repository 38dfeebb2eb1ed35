"""Render HA Ingestor's dashboard from the demo's real Home Assistant into a PNG.

The demo's home (demo/run.py) reports for a few minutes, with an InfluxDB outage in
the middle so the backlog and the spool have something to show; then headless
Chromium (Debian's) logs in and takes the dashboard from dashboards/lovelace/ as a
user sees it, its history graph narrowed from a day to the minutes of the run.
Writes docs/images/dashboard.png unless given another path.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import sys
import tempfile

from playwright.sync_api import sync_playwright
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo.run import (
    DASHBOARD,
    DASHBOARD_PATH,
    HassExited,
    Home,
    refresh_health,
    running_home,
    supervised,
)
from tests.hass_process import launch_chromium, log_in

# Long enough for the sensors (refreshed every 30 s) to draw the outage.
BEFORE_OUTAGE = 90.0
OUTAGE = 60.0
AFTER_OUTAGE = 90.0
HISTORY_HOURS = (BEFORE_OUTAGE + OUTAGE + AFTER_OUTAGE + 30) / 3600


async def outage_and_recovery(home: Home) -> None:
    readings = asyncio.create_task(home.report_readings())
    try:
        await asyncio.sleep(BEFORE_OUTAGE)
        print(f"InfluxDB down for {OUTAGE:.0f} s …")
        await asyncio.to_thread(home.influxdb.stop)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(home.influxdb.start)
        # Without waiting for the retry delay to pass.
        await home.api.rest("POST", "/api/services/ha_ingestor/flush", {})
        print(f"InfluxDB back; {AFTER_OUTAGE:.0f} s more …")
        await asyncio.sleep(AFTER_OUTAGE)
        await refresh_health(home.api, home.entry_id)
    finally:
        readings.cancel()
    dashboard = yaml.safe_load(DASHBOARD.read_text())
    for view in dashboard["views"]:
        for section in view.get("sections", []):
            for card in section["cards"]:
                if card["type"] == "history-graph":
                    card["hours_to_show"] = round(HISTORY_HOURS, 3)
    await home.api.ws("lovelace/config/save", url_path=DASHBOARD_PATH, config=dashboard)


def screenshot(url: str, path: Path) -> None:
    with (
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory(prefix="ha_ingestor_chromium_") as profile,
    ):
        context = launch_chromium(playwright, Path(profile), height=1320)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            log_in(page, url)
            page.goto(f"{url}/{DASHBOARD_PATH}/health")
            page.locator("hui-history-graph-card").wait_for()
            # The graph draws once the history has loaded.
            page.wait_for_timeout(5000)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=path)
        finally:
            context.close()


async def main(path: Path) -> int:
    try:
        async with running_home() as home:
            await supervised(home.hass, outage_and_recovery(home))
            await supervised(
                home.hass, asyncio.to_thread(screenshot, home.hass.url, path)
            )
    except HassExited as err:
        print(f"\n{err}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=ROOT / "docs" / "images" / "dashboard.png"
    )
    sys.exit(asyncio.run(main(parser.parse_args().path)))

"""Diagnostics show the pipeline's state and never a secret."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.ha_ingestor.const import DOMAIN

from .servers import InfluxDB1Server


@pytest.mark.current_ha_only
async def test_diagnostics_redact_credentials(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
    snapshot: SnapshotAssertion,
) -> None:
    """Counters and settings are there; the username and password are not."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="diagnostics",
        data=influxdb_v1.entry_data() | {"url": "http://127.0.0.1:8086"},
    )
    entry.add_to_hass(hass)
    # The snapshot must not depend on the random server port.
    hass.config_entries.async_update_entry(
        entry, data=entry.data | {"url": influxdb_v1.url}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    hass.states.async_set("sensor.diagnosed", "1")
    await hass.async_block_till_done()
    await entry.runtime_data.pipeline.async_flush()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert influxdb_v1.admin_password not in str(diagnostics)
    assert diagnostics == snapshot(exclude=props("url", "last_write"))


async def test_diagnostics_hide_url_credentials_and_recorded_values(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """An entry stored by an older release with the credentials in its URL shows
    the URL without them, and refused lines show their keys but not their values,
    in the line and in the server's error quoting it."""
    user, password = influxdb_v1.admin_user, influxdb_v1.admin_password
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="diagnostics",
        data={
            "api_version": "1",
            "url": influxdb_v1.url.replace("://", f"://{user}:{password}@"),
            "database": "home",
            "verify_ssl": True,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    # The field "state" holds floats, so the server refuses the text state below.
    _write(influxdb_v1, "sensor state=1")
    hass.states.async_set("sensor.diagnosed", "hunter2 secret")
    await hass.async_block_till_done()
    await entry.runtime_data.pipeline.async_flush()
    unparsable = 'sensor s="a",v=hunter2 1700000000000000000'
    status, error = _write(influxdb_v1, unparsable)
    assert status == 400
    await hass.async_add_executor_job(
        entry.runtime_data.pipeline.spool.add_dead_letters, [unparsable], error
    )

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["url"] == influxdb_v1.url.replace(
        "://", "://**REDACTED**@"
    )
    assert password not in str(diagnostics)
    assert "hunter2" not in str(diagnostics)
    refused, injected = diagnostics["spool"]["oldest_dead_letters"]
    assert re.fullmatch(
        r"sensor,\S+ (\w+=…,)+state=…,context_id=… \d+", refused["line"]
    )
    assert "field type conflict" in refused["error"]
    assert injected == {
        "line": "sensor s=…,v=… 1700000000000000000",
        "error": "unable to parse 'sensor s=…,v=… 1700000000000000000': "
        "invalid boolean",
    }
    assert await hass.config_entries.async_unload(entry.entry_id)


def _write(server: InfluxDB1Server, line: str) -> tuple[int, str]:
    """Write one line to the ``home`` database; the status and the error text."""
    credentials = f"{server.admin_user}:{server.admin_password}".encode()
    request = urllib.request.Request(
        f"{server.url}/write?db=home&precision=ns",
        data=line.encode(),
        method="POST",
        headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())["error"]


async def test_diagnostics_show_the_sinks_without_their_secrets(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    influxdb_v1: InfluxDB1Server,
) -> None:
    """With a webhook and MQTT republish on, diagnostics show each sink's state
    and settings; the webhook secret, a token in its URL and the pseudonym key
    are not there."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="diagnostics",
        data=influxdb_v1.entry_data(),
        options={
            "webhook_url": "http://127.0.0.1:9/hook?token=url-token-123",
            "webhook_secret": "webhook-secret-456",
            "republish": True,
            "pseudonymize_users": True,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    hass.states.async_set("sensor.diagnosed", "1")
    await hass.async_block_till_done()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = json.dumps(diagnostics)
    for secret in ("webhook-secret-456", "url-token-123", entry.data["pseudonym_key"]):
        assert secret not in text
    options = diagnostics["entry"]["options"]
    assert options["webhook_secret"] == "**REDACTED**"
    assert options["webhook_url"] == "http://127.0.0.1:9/hook"
    assert options["republish"] is True
    assert (
        diagnostics["webhook"]["held_in_memory"]
        + diagnostics["webhook"]["spool"]["points"]
        == 1
    )
    assert diagnostics["republish"] == {"connected": False, "sent": 0, "dropped": 1}

"""Diagnostics show the pipeline's state and never a secret."""

from __future__ import annotations

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
        data={
            "api_version": "1",
            "url": "http://127.0.0.1:8086",
            "database": "home",
            "username": influxdb_v1.admin_user,
            "password": influxdb_v1.admin_password,
            "verify_ssl": True,
        },
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

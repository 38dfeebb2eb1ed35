"""HA Ingestor: deliver Home Assistant's activity to InfluxDB without losing it."""

from __future__ import annotations

import asyncio
import shutil

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from . import issues, runtime
from .config_flow import OPTIONS_FLOW_RELOADS
from .const import DOMAIN
from .entity import async_remove_stale_sink_entities
from .export import ExportView
from .models import MeasurementStrategy
from .privacy import CONF_PSEUDONYM_KEY, new_pseudonym_key
from .runtime import HaIngestorConfigEntry, IngestorData, spool_path
from .services import async_setup_services
from .websocket_api import async_register_commands
from .writer import WriteError, async_create_writer

__all__ = ["HaIngestorConfigEntry", "IngestorData", "spool_path"]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's services, WebSocket commands and export view."""
    async_setup_services(hass)
    async_register_commands(hass)
    hass.http.register_view(ExportView())
    return True


async def async_setup_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Start capturing at once; the connection test runs in the background, and
    the spool holds everything while InfluxDB is unreachable or refuses us."""
    try:
        writer = await async_create_writer(hass, entry.data)
    except WriteError as err:  # e.g. the CA file is gone
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    if CONF_PSEUDONYM_KEY not in entry.data:
        hass.config_entries.async_update_entry(
            entry, data={**entry.data, CONF_PSEUDONYM_KEY: new_pseudonym_key()}
        )
    await runtime.async_start(hass, entry, writer)
    if not OPTIONS_FLOW_RELOADS:  # pragma: no cover - Home Assistant before 2025.8
        entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    await entry.runtime_data.coordinator.async_config_entry_first_refresh()
    async_remove_stale_sink_entities(hass, entry)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await entry.runtime_data.backfill.async_resume()
    return True


async def async_unload_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Stop capturing, write what is queued in time, spool the rest, close."""
    data = entry.runtime_data
    data.capture.async_stop()
    # Before the pipeline closes: what the backfill handed over is written.
    await data.backfill.async_stop()
    if data.republisher is not None:
        await data.republisher.async_stop()
    await asyncio.gather(
        *(p.async_shutdown() for p in (data.pipeline, data.webhook) if p is not None)
    )
    # After the last write: the counters the entities keep include it.
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    await data.writer.async_close()
    return unloaded


async def async_migrate_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Bring an entry stored by an older release up to date; refuse a newer one."""
    if entry.version > 1:
        return False
    if entry.minor_version < 2:
        # 1.1 stored the strategy as "domain__device_class", which a selector
        # cannot offer; the measurements it names do not change.
        options = dict(entry.options)
        if options.get("measurement") == "domain__device_class":
            options["measurement"] = MeasurementStrategy.DOMAIN_DEVICE_CLASS.value
        hass.config_entries.async_update_entry(entry, options=options, minor_version=2)
    return True


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete the entry's spool and repair issues with it."""
    issues.async_clear(hass, entry, *issues.ALL)
    await hass.async_add_executor_job(
        shutil.rmtree, spool_path(hass, entry).parent, True
    )


async def _async_options_updated(  # pragma: no cover - before 2025.8
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> None:
    """Options take effect by reloading the entry (no HA restart)."""
    await hass.config_entries.async_reload(entry.entry_id)

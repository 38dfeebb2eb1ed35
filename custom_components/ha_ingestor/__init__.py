"""HA Ingestor: deliver Home Assistant's activity to InfluxDB."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady

from .const import DOMAIN
from .models import IngestorOptions
from .writer import InfluxWriter, InvalidAuth, WriteError, async_create_writer


@dataclass(kw_only=True)
class IngestorData:
    """What a loaded entry holds at runtime."""

    writer: InfluxWriter
    options: IngestorOptions


type HaIngestorConfigEntry = ConfigEntry[IngestorData]


async def async_setup_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Connect to InfluxDB and start the pipeline."""
    try:
        writer = await async_create_writer(hass, entry.data)
    except WriteError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    try:
        await writer.async_write(b"")
    except InvalidAuth as err:
        await writer.async_close()
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="invalid_auth"
        ) from err
    except WriteError as err:
        await writer.async_close()
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    entry.runtime_data = IngestorData(
        writer=writer, options=IngestorOptions.from_entry_options(entry.options)
    )
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Stop the pipeline and close the connection."""
    await entry.runtime_data.writer.async_close()
    return True


async def _async_options_updated(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> None:
    """Options take effect by reloading the entry (no HA restart)."""
    await hass.config_entries.async_reload(entry.entry_id)

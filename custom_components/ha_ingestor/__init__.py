"""HA Ingestor: deliver Home Assistant's activity to InfluxDB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady

from .capture import Capture
from .const import CONF_API_VERSION, DOMAIN, LOGGER
from .enrichment import Enricher
from .filters import EntityFilter
from .line_protocol import LineEncoder
from .models import IngestorOptions
from .pipeline import Pipeline
from .points import PointBuilder
from .stats import IngestorStats
from .writer import InfluxWriter, InvalidAuth, WriteError, async_create_writer

FINAL_FLUSH_TIMEOUT = 10.0


@dataclass(kw_only=True)
class IngestorData:
    """What a loaded entry holds at runtime."""

    writer: InfluxWriter
    options: IngestorOptions
    stats: IngestorStats
    pipeline: Pipeline
    enricher: Enricher


type HaIngestorConfigEntry = ConfigEntry[IngestorData]


async def async_setup_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Connect to InfluxDB and start capturing."""
    writer = await _async_connect(hass, entry)
    options = IngestorOptions.from_entry_options(entry.options)
    stats = IngestorStats()
    encoder = LineEncoder(entry.data[CONF_API_VERSION])
    enricher = Enricher(hass, options, encoder, EntityFilter(options))
    pipeline = Pipeline(
        hass,
        writer,
        stats,
        batch_size=options.batch_size,
        flush_interval=options.flush_interval,
    )
    pipeline.on_auth_failed = lambda: entry.async_start_reauth(hass)
    entry.runtime_data = IngestorData(
        writer=writer,
        options=options,
        stats=stats,
        pipeline=pipeline,
        enricher=enricher,
    )
    for unsub in await enricher.async_start():
        entry.async_on_unload(unsub)
    builder = PointBuilder(options, enricher, encoder, stats)
    for unsub in Capture(hass, options, builder, pipeline, stats).async_start():
        entry.async_on_unload(unsub)
    entry.async_create_background_task(
        hass, pipeline.async_run(), f"{DOMAIN} delivery {entry.title}"
    )

    @callback
    def _flush_on_stop(event: Event) -> None:
        hass.async_create_task(pipeline.async_flush(), eager_start=True)

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _flush_on_stop)
    )
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def _async_connect(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> InfluxWriter:
    """Create the writer and check the server accepts a write."""
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
    return writer


async def async_unload_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Stop capturing, write what is queued, close the connection."""
    data = entry.runtime_data
    try:
        async with asyncio.timeout(FINAL_FLUSH_TIMEOUT):
            await data.pipeline.async_flush()
    except TimeoutError:
        LOGGER.warning(
            "InfluxDB did not take the last %s points in time", data.pipeline.queued
        )
    await data.writer.async_close()
    return True


async def _async_options_updated(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> None:
    """Options take effect by reloading the entry (no HA restart)."""
    await hass.config_entries.async_reload(entry.entry_id)

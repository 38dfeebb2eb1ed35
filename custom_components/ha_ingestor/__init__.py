"""HA Ingestor: deliver Home Assistant's activity to InfluxDB without losing it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import shutil

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from . import issues
from .capture import Capture
from .const import CONF_API_VERSION, DOMAIN, LOGGER
from .enrichment import Enricher
from .filters import EntityFilter
from .line_protocol import LineEncoder
from .models import IngestorOptions
from .pipeline import Pipeline, PipelineHooks
from .points import PointBuilder
from .services import async_setup_services
from .spool import Spool
from .stats import IngestorStats
from .writer import InfluxWriter, InvalidAuth, WriteError, async_create_writer

SHUTDOWN_TIMEOUT = 10.0
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(kw_only=True)
class IngestorData:
    """What a loaded entry holds at runtime."""

    writer: InfluxWriter
    options: IngestorOptions
    stats: IngestorStats
    pipeline: Pipeline
    enricher: Enricher
    capture: Capture


type HaIngestorConfigEntry = ConfigEntry[IngestorData]


def spool_path(hass: HomeAssistant, entry: ConfigEntry) -> Path:
    """Where an entry's spool lives: under .storage, keyed by the entry id."""
    return Path(hass.config.path(".storage", DOMAIN, entry.entry_id, "spool.db"))


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's services."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Start capturing; the spool holds everything while InfluxDB is unreachable."""
    writer = await _async_connect(hass, entry)
    options = IngestorOptions.from_entry_options(entry.options)
    writer.compress = options.compress
    spool = Spool(spool_path(hass, entry), int(options.max_spool_mb * 1024 * 1024))
    await hass.async_add_executor_job(spool.open)
    stats = IngestorStats()
    pipeline = Pipeline(
        hass,
        writer,
        spool,
        stats,
        batch_size=options.batch_size,
        flush_interval=options.flush_interval,
        max_memory_points=options.max_memory_points,
        hooks=_hooks(hass, entry),
    )
    encoder = LineEncoder(entry.data[CONF_API_VERSION])
    enricher = Enricher(hass, options, encoder, EntityFilter(options))
    capture = Capture(
        hass, options, PointBuilder(options, enricher, encoder, stats), pipeline, stats
    )
    entry.runtime_data = IngestorData(
        writer=writer,
        options=options,
        stats=stats,
        pipeline=pipeline,
        enricher=enricher,
        capture=capture,
    )
    for unsub in await enricher.async_start():
        entry.async_on_unload(unsub)
    capture.async_start()
    entry.async_on_unload(capture.async_stop)
    entry.async_create_background_task(
        hass, pipeline.async_run(), f"{DOMAIN} delivery {entry.title}"
    )

    async def _async_on_stop(event: Event) -> None:
        await pipeline.async_shutdown(SHUTDOWN_TIMEOUT)

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_on_stop)
    )
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


def _hooks(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> PipelineHooks:
    def _auth_failed() -> None:
        issues.async_raise(hass, entry, issues.AUTH_FAILED)
        entry.async_start_reauth(hass)

    def _recovered() -> None:
        issues.async_clear(hass, entry, issues.AUTH_FAILED, issues.TARGET_MISSING)

    return PipelineHooks(
        auth_failed=_auth_failed,
        target_missing=lambda error: issues.async_raise(
            hass, entry, issues.TARGET_MISSING, error=error
        ),
        spool_full=lambda dropped: issues.async_raise(
            hass, entry, issues.SPOOL_FULL, dropped=str(dropped)
        ),
        recovered=_recovered,
    )


async def _async_connect(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> InfluxWriter:
    """Create the writer and try a write. Only refused credentials stop setup: an
    unreachable server is what the spool is for."""
    try:
        writer = await async_create_writer(hass, entry.data)
    except WriteError as err:  # e.g. the CA file is gone
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
        LOGGER.warning(
            "InfluxDB is not available (%s); capturing into the spool until it is", err
        )
    else:
        issues.async_clear(hass, entry, issues.AUTH_FAILED, issues.TARGET_MISSING)
    return writer


async def async_unload_entry(hass: HomeAssistant, entry: HaIngestorConfigEntry) -> bool:
    """Stop capturing, write what is queued (or spool it), close everything."""
    data = entry.runtime_data
    data.capture.async_stop()
    await data.pipeline.async_shutdown(SHUTDOWN_TIMEOUT)
    await data.writer.async_close()
    await hass.async_add_executor_job(data.pipeline.spool.close)
    return True


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete the entry's spool and repair issues with it."""
    issues.async_clear(
        hass, entry, issues.AUTH_FAILED, issues.TARGET_MISSING, issues.SPOOL_FULL
    )
    await hass.async_add_executor_job(
        shutil.rmtree, spool_path(hass, entry).parent, True
    )


async def _async_options_updated(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> None:
    """Options take effect by reloading the entry (no HA restart)."""
    await hass.config_entries.async_reload(entry.entry_id)

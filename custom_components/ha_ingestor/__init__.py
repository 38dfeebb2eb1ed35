"""HA Ingestor: deliver Home Assistant's activity to InfluxDB without losing it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
import shutil

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
    Platform,
)
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from . import issues
from .backfill import Backfill
from .capture import Capture
from .config_flow import OPTIONS_FLOW_RELOADS
from .const import CONF_API_VERSION, DOMAIN
from .context import ContextEntities
from .coordinator import IngestorCoordinator
from .enriched import EnrichedEvents
from .enrichment import Enricher
from .entity import async_remove_stale_sink_entities
from .export import ExportView
from .filters import EntityFilter
from .health import PipelineHooks
from .line_protocol import LineEncoder
from .models import IngestorOptions, MeasurementStrategy
from .pipeline import Pipeline
from .points import PointBuilder
from .privacy import CONF_PSEUDONYM_KEY, Privacy, new_pseudonym_key
from .republish import Republisher
from .services import async_setup_services
from .sinks import JsonSinks
from .spool import Spool
from .stats import IngestorStats
from .stream import LiveStream
from .topology import TopologyWriter
from .webhook import create_webhook_writer
from .websocket_api import async_register_commands
from .writer import InfluxWriter, WriteError, async_create_writer

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]


@dataclass(kw_only=True)
class IngestorData:
    """What a loaded entry holds at runtime."""

    writer: InfluxWriter
    options: IngestorOptions
    stats: IngestorStats
    pipeline: Pipeline
    enricher: Enricher
    capture: Capture
    coordinator: IngestorCoordinator
    backfill: Backfill
    # The JSON fan-out, the live stream and the ring of recent events.
    sinks: JsonSinks
    # The webhook sink: its own pipeline (and spool) with the same mechanism.
    webhook: Pipeline | None = None
    webhook_stats: IngestorStats | None = None
    republisher: Republisher | None = None


type HaIngestorConfigEntry = ConfigEntry[IngestorData]


def spool_path(hass: HomeAssistant, entry: ConfigEntry) -> Path:
    """Where an entry's spool lives: under .storage, keyed by the entry id."""
    return Path(hass.config.path(".storage", DOMAIN, entry.entry_id, "spool.db"))


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
    options = IngestorOptions.from_entry_options(entry.options)
    privacy = Privacy(options, entry.data[CONF_PSEUDONYM_KEY])
    writer.compress = options.compress
    stats = IngestorStats()
    pipeline = _pipeline(hass, entry, options, writer, spool_path(hass, entry), stats)
    await issues.async_clear_resolved_corrupt_spool(hass, entry)
    await pipeline.async_open_spool()
    encoder = LineEncoder(entry.data[CONF_API_VERSION])
    enricher = Enricher(hass, options, encoder, EntityFilter(options), privacy)
    context = (
        ContextEntities(hass, options, encoder, privacy, enricher.async_context_changed)
        if options.context_entities
        else None
    )
    webhook, webhook_stats, republisher = await _async_json_sinks(hass, entry, options)
    stream = LiveStream(hass, _noop)
    sinks = JsonSinks(
        EnrichedEvents(options, enricher, privacy, context),
        webhook,
        republisher,
        stream,
    )
    capture = Capture(
        hass,
        entry,
        options,
        PointBuilder(options, enricher, encoder, stats, privacy, context),
        pipeline,
        stats,
        sinks,
    )
    stream.on_change = capture.async_sinks_changed
    coordinator = IngestorCoordinator(
        hass,
        entry,
        pipeline,
        stats,
        webhook=(webhook, webhook_stats) if webhook and webhook_stats else None,
        republisher=republisher,
    )
    pipeline.health.hooks.changed = coordinator.async_pipeline_changed
    # Without context entities: their values now are not those of the past.
    backfill = Backfill(
        hass,
        entry,
        PointBuilder(options, enricher, encoder, stats, privacy),
        pipeline,
        coordinator,
        stats,
        options.batch_size,
    )
    if webhook is not None:
        webhook.health.hooks.changed = coordinator.async_pipeline_changed
    entry.runtime_data = IngestorData(
        writer=writer,
        options=options,
        stats=stats,
        pipeline=pipeline,
        enricher=enricher,
        capture=capture,
        coordinator=coordinator,
        backfill=backfill,
        webhook=webhook,
        webhook_stats=webhook_stats,
        republisher=republisher,
        sinks=sinks,
    )
    for unsub in await enricher.async_start():
        entry.async_on_unload(unsub)
    if context is not None:
        # Before capture's listener: a context entity's change is seen first.
        entry.async_on_unload(context.async_start())
    entry.async_on_unload(
        TopologyWriter(hass, enricher, encoder, pipeline.add).async_start()
    )
    capture.async_start()
    entry.async_on_unload(capture.async_stop)
    entry.async_on_unload(stream.async_stop)
    pipeline.async_start(entry)
    if webhook is not None:
        webhook.async_start(entry)
    if republisher is not None:
        republisher.async_start()
    delivering = [p for p in (pipeline, webhook) if p is not None]

    async def _async_on_stop(event: Event) -> None:
        await asyncio.gather(*(p.async_last_write() for p in delivering))

    async def _async_on_final_write(event: Event) -> None:
        # Each stops capture once it spooled what it held, and then spools
        # what came meanwhile: nothing captured is left out of either.
        await asyncio.gather(
            *(p.async_final_write(capture.async_stop) for p in delivering)
        )

    # Not listen_once: these are removed on unload, also after they fired.
    entry.async_on_unload(
        hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, _async_on_stop)
    )
    entry.async_on_unload(
        hass.bus.async_listen(EVENT_HOMEASSISTANT_FINAL_WRITE, _async_on_final_write)
    )
    if not OPTIONS_FLOW_RELOADS:  # pragma: no cover - Home Assistant before 2025.8
        entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    await coordinator.async_config_entry_first_refresh()
    async_remove_stale_sink_entities(hass, entry)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await backfill.async_resume()
    return True


def _pipeline(
    hass: HomeAssistant,
    entry: HaIngestorConfigEntry,
    options: IngestorOptions,
    writer: InfluxWriter,
    path: Path,
    stats: IngestorStats,
    prefix: str = "",
    sink: str = "InfluxDB",
) -> Pipeline:
    """A delivery pipeline for one sink; its repairs carry the sink's prefix."""
    return Pipeline(
        hass,
        writer,
        Spool(path, int(options.max_spool_mb * 1024 * 1024)),
        stats,
        batch_size=options.batch_size,
        flush_interval=options.flush_interval,
        max_memory_points=options.max_memory_points,
        outage_alert=timedelta(minutes=options.outage_alert_minutes),
        hooks=PipelineHooks(
            raise_issue=partial(_async_raise_issue, hass, entry, prefix),
            clear_issue=partial(_async_clear_issue, hass, entry, prefix),
            # A refused webhook signature is fixed in the options, not by reauth.
            reauth=partial(entry.async_start_reauth, hass) if not prefix else _noop,
        ),
        sink=sink,
    )


async def _async_json_sinks(
    hass: HomeAssistant, entry: HaIngestorConfigEntry, options: IngestorOptions
) -> tuple[Pipeline | None, IngestorStats | None, Republisher | None]:
    """The webhook's pipeline (spool opened) and the MQTT republisher, if on."""
    webhook = webhook_stats = None
    if options.webhook_url and options.webhook_secret:
        webhook_stats = IngestorStats()
        webhook = _pipeline(
            hass,
            entry,
            options,
            create_webhook_writer(hass, options.webhook_url, options.webhook_secret),
            spool_path(hass, entry).with_name("webhook_spool.db"),
            webhook_stats,
            issues.WEBHOOK,
            "the webhook",
        )
        await issues.async_clear_resolved_corrupt_spool(hass, entry, issues.WEBHOOK)
        await webhook.async_open_spool()
    republisher = Republisher(hass, entry, options) if options.republish else None
    return webhook, webhook_stats, republisher


def _noop() -> None:
    """Nothing to do."""


def _async_raise_issue(
    hass: HomeAssistant,
    entry: HaIngestorConfigEntry,
    prefix: str,
    kind: str,
    placeholders: Mapping[str, str],
) -> None:
    issues.async_raise(hass, entry, prefix + kind, **placeholders)


def _async_clear_issue(
    hass: HomeAssistant, entry: HaIngestorConfigEntry, prefix: str, kind: str
) -> None:
    issues.async_clear(hass, entry, prefix + kind)


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

"""An entry's runtime: its delivery pipelines (InfluxDB's and, when on, the
webhook's), capture with its enrichment, context entities and JSON sinks, the
health coordinator, the backfill and the topology, built and wired together.

Kept apart from ``__init__`` so that setup reads as setup; the order of the
steps below matters where a comment says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import Event, HomeAssistant

from . import issues
from .backfill import Backfill
from .capture import Capture
from .const import CONF_API_VERSION, DOMAIN
from .context import ContextEntities
from .coordinator import IngestorCoordinator
from .enriched import EnrichedEvents
from .enrichment import Enricher
from .filters import EntityFilter
from .health import PipelineHooks
from .line_protocol import LineEncoder
from .models import IngestorOptions
from .pipeline import Pipeline
from .points import PointBuilder
from .privacy import CONF_PSEUDONYM_KEY, Privacy
from .republish import Republisher
from .sinks import JsonSinks
from .spool import Spool
from .stats import IngestorStats
from .stream import LiveStream
from .topology import TopologyWriter
from .webhook import create_webhook_writer
from .writer import InfluxWriter


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


async def async_start(
    hass: HomeAssistant, entry: HaIngestorConfigEntry, writer: InfluxWriter
) -> None:
    """Build the entry's runtime, store it as ``entry.runtime_data`` and start
    capturing and delivering; everything started stops on unload."""
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

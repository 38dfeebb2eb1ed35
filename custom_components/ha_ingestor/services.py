"""Service actions: flush now, retry or purge the dead letters, backfill from
the recorder's history and cancel that.

Each answers per entry, keyed by the entry's title: what a user sees and picks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonValueType

from .backfill import recorder_loaded
from .const import DOMAIN, LOGGER
from .spool import SpoolError

try:  # Home Assistant 2026.x validates with probatio, older releases voluptuous
    import probatio as vol
except ImportError:  # pragma: no cover - exercised by the minimum-version run
    import voluptuous as vol  # type: ignore[no-redef]

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry

ATTR_CONFIG_ENTRY_ID = "config_entry_id"
SERVICE_FLUSH = "flush"
SERVICE_RETRY_DEAD_LETTERS = "retry_dead_letters"
SERVICE_PURGE_DEAD_LETTERS = "purge_dead_letters"
SERVICE_BACKFILL = "backfill"
SERVICE_CANCEL_BACKFILL = "cancel_backfill"
ATTR_START = "start"
ATTR_END = "end"
SCHEMA = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})
BACKFILL_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_START): cv.datetime,
        vol.Optional(ATTR_END): cv.datetime,
        vol.Optional(ATTR_ENTITY_ID): cv.entity_ids,
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
    }
)


def _entries(call: ServiceCall) -> dict[str, HaIngestorConfigEntry]:
    """The loaded entries a call targets (all of them without an entry id), by
    the key of their result: the title, with the entry id when titles repeat."""
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    entries = [
        entry
        for entry in call.hass.config_entries.async_entries(DOMAIN)
        if entry.state is ConfigEntryState.LOADED
        and (entry_id is None or entry.entry_id == entry_id)
    ]
    if not entries:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"entry_id": str(entry_id)},
        )
    titles = Counter(entry.title for entry in entries)
    return {
        entry.title
        if titles[entry.title] == 1
        else f"{entry.title} ({entry.entry_id})": entry
        for entry in entries
    }


async def _async_flush(call: ServiceCall) -> ServiceResponse:
    written: dict[str, JsonValueType] = {}
    for key, entry in _entries(call).items():
        written[key] = await _async_flush_entry(entry)
    return {"written": written}


async def _async_flush_entry(entry: HaIngestorConfigEntry) -> bool:
    """Flush now, to InfluxDB and the webhook if it is on; True when both took
    everything. The pipelines handle write and spool failures themselves, so
    what reaches here is unexpected, and is told to the caller in HA's terms."""
    data = entry.runtime_data
    pipelines = [p for p in (data.pipeline, data.webhook) if p is not None]
    try:
        results = await asyncio.gather(*(p.async_flush(force=True) for p in pipelines))
    except Exception as err:
        LOGGER.exception("Unexpected error while flushing %s", entry.title)
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="write_failed",
            translation_placeholders={"error": f"{type(err).__name__}: {err}"},
        ) from err
    return all(results)


async def _async_retry_dead_letters(call: ServiceCall) -> ServiceResponse:
    retried: dict[str, JsonValueType] = {}
    for key, entry in _entries(call).items():
        spool = entry.runtime_data.pipeline.spool
        # The lines move to the spool in one transaction: nothing is lost if the
        # write that follows fails.
        retried[key] = await _async_spool_job(call.hass, spool.requeue_dead_letters)
        await _async_flush_entry(entry)
    return {"retried": retried}


async def _async_purge_dead_letters(call: ServiceCall) -> ServiceResponse:
    purged: dict[str, JsonValueType] = {}
    for key, entry in _entries(call).items():
        spool = entry.runtime_data.pipeline.spool
        purged[key] = await _async_spool_job(call.hass, spool.purge_dead_letters)
    return {"purged": purged}


async def _async_backfill(call: ServiceCall) -> ServiceResponse:
    """Start a backfill on each entry; with a response asked for, wait for
    them to end and answer their totals."""
    entries = _entries(call)
    if not recorder_loaded(call.hass):
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="recorder_not_loaded"
        )
    now = dt_util.utcnow()
    # A time without a zone is Home Assistant's local time, as the UI sends it.
    start = dt_util.as_utc(call.data[ATTR_START])
    end = min(dt_util.as_utc(call.data.get(ATTR_END) or now), now)
    if end <= start:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="backfill_end_before_start",
            translation_placeholders={
                "start": dt_util.as_local(start).isoformat(),
                "end": dt_util.as_local(end).isoformat(),
            },
        )
    for key, entry in entries.items():
        if entry.runtime_data.backfill.running:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="backfill_running",
                translation_placeholders={"entry": key},
            )
    entity_ids = call.data.get(ATTR_ENTITY_ID)
    runs = {
        key: entry.runtime_data.backfill.async_start(start, end, entity_ids)
        for key, entry in entries.items()
    }
    if not call.return_response:
        return None
    backfilled: dict[str, JsonValueType] = {}
    for key, done in runs.items():
        # Shielded: a caller that stops waiting does not stop the backfill.
        backfilled[key] = (await asyncio.shield(done)).response()
    return {"backfilled": backfilled}


async def _async_cancel_backfill(call: ServiceCall) -> ServiceResponse:
    cancelled: dict[str, JsonValueType] = {}
    for key, entry in _entries(call).items():
        cancelled[key] = await entry.runtime_data.backfill.async_cancel() is not None
    return {"cancelled": cancelled}


async def _async_spool_job(hass: HomeAssistant, job: Callable[[], int]) -> int:
    try:
        return await hass.async_add_executor_job(job)
    except SpoolError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="spool_failed",
            translation_placeholders={"error": str(err)},
        ) from err


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the service actions (once, for every entry)."""
    for name, handler in (
        (SERVICE_FLUSH, _async_flush),
        (SERVICE_RETRY_DEAD_LETTERS, _async_retry_dead_letters),
        (SERVICE_PURGE_DEAD_LETTERS, _async_purge_dead_letters),
        (SERVICE_CANCEL_BACKFILL, _async_cancel_backfill),
    ):
        hass.services.async_register(
            DOMAIN,
            name,
            handler,
            schema=SCHEMA,
            supports_response=SupportsResponse.OPTIONAL,
        )
    hass.services.async_register(
        DOMAIN,
        SERVICE_BACKFILL,
        _async_backfill,
        schema=BACKFILL_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )

"""Service actions: flush now, retry or purge the dead letters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util.json import JsonValueType

from .const import DOMAIN

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
SCHEMA = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})


def _entries(call: ServiceCall) -> list[HaIngestorConfigEntry]:
    """The loaded entries a call targets (all of them without an entry id)."""
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
    return entries


async def _async_flush(call: ServiceCall) -> ServiceResponse:
    written: dict[str, JsonValueType] = {}
    for entry in _entries(call):
        written[entry.entry_id] = await entry.runtime_data.pipeline.async_flush(
            force=True
        )
    return {"written": written}


async def _async_retry_dead_letters(call: ServiceCall) -> ServiceResponse:
    retried: dict[str, JsonValueType] = {}
    for entry in _entries(call):
        pipeline = entry.runtime_data.pipeline
        lines = await call.hass.async_add_executor_job(pipeline.spool.take_dead_letters)
        for line in lines:
            pipeline.add(line)
        retried[entry.entry_id] = len(lines)
        await pipeline.async_flush(force=True)
    return {"retried": retried}


async def _async_purge_dead_letters(call: ServiceCall) -> ServiceResponse:
    purged: dict[str, JsonValueType] = {}
    for entry in _entries(call):
        spool = entry.runtime_data.pipeline.spool
        purged[entry.entry_id] = await call.hass.async_add_executor_job(
            spool.purge_dead_letters
        )
    return {"purged": purged}


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the service actions (once, for every entry)."""
    for name, handler in (
        (SERVICE_FLUSH, _async_flush),
        (SERVICE_RETRY_DEAD_LETTERS, _async_retry_dead_letters),
        (SERVICE_PURGE_DEAD_LETTERS, _async_purge_dead_letters),
    ):
        hass.services.async_register(
            DOMAIN,
            name,
            handler,
            schema=SCHEMA,
            supports_response=SupportsResponse.OPTIONAL,
        )

"""Diagnostics: the entry's settings (secrets redacted) and the pipeline's counters."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from . import HaIngestorConfigEntry
from .const import CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME

TO_REDACT = {CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> dict[str, Any]:
    """Return what helps to understand what the integration does and did."""
    data = entry.runtime_data
    spool = data.pipeline.spool
    dead_letters = await hass.async_add_executor_job(spool.dead_letters, 20)
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": data.options.model_dump(mode="json"),
        },
        "pipeline": {
            "queued": data.pipeline.queued,
            "paused_for_credentials": data.pipeline.paused,
            "stats": data.stats.as_dict(),
        },
        "spool": {
            "batches": spool.batches,
            "points": spool.points,
            "bytes": spool.bytes,
            "max_bytes": spool.max_bytes,
            "dead_letters": spool.dead_letter_count,
            "oldest_dead_letters": [
                {"line": letter.line, "error": letter.error} for letter in dead_letters
            ],
        },
    }

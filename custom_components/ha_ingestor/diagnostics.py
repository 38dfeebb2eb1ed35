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
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": data.options.model_dump(mode="json"),
        },
        "pipeline": {
            "queued": data.pipeline.queued,
            "stats": data.stats.as_dict(),
        },
    }

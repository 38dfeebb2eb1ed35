"""Diagnostics: the entry's settings (secrets redacted) and the pipeline's counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.core import HomeAssistant

from . import HaIngestorConfigEntry
from .const import CONF_PASSWORD, CONF_TOKEN, CONF_URL, CONF_USERNAME
from .line_protocol import elide_field_values
from .spool import DeadLetter
from .writer import parse_url

TO_REDACT = {CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME}


def _redact_entry_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Secrets redacted, and the URL's userinfo (entries stored by older releases
    may hold credentials there)."""
    redacted: dict[str, Any] = async_redact_data(dict(data), TO_REDACT)
    # A loaded entry's URL parses: the writer could not be built otherwise.
    url = parse_url(redacted[CONF_URL])
    if url.user is not None or url.password is not None:
        redacted[CONF_URL] = str(url.with_user(None)).replace(
            "://", f"://{REDACTED}@", 1
        )
    return redacted


def _dead_letter(letter: DeadLetter) -> dict[str, str]:
    """A refused line without its recorded values (InfluxDB 1.x quotes the line in
    its error, so the error gets the same treatment)."""
    line = elide_field_values(letter.line)
    return {"line": line, "error": letter.error.replace(letter.line, line)}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> dict[str, Any]:
    """Return what helps to understand what the integration does and did."""
    data = entry.runtime_data
    spool = data.pipeline.spool
    dead_letters = await hass.async_add_executor_job(spool.dead_letters, 20)
    return {
        "entry": {
            "data": _redact_entry_data(entry.data),
            "options": data.options.model_dump(mode="json"),
        },
        "pipeline": {
            "memory": {
                "held": data.pipeline.held,
                "queued": data.pipeline.queued,
                "writing": data.pipeline.writing,
                "moving_to_spool": data.pipeline.moving,
                "max_memory_points": data.pipeline.max_memory_points,
            },
            "paused_for_credentials": data.pipeline.paused,
            "backing_off": data.pipeline.backing_off,
            "stats": data.stats.as_dict(),
        },
        "spool": {
            "available": spool.available,
            "error": data.pipeline.spool_error,
            "batches": spool.batches,
            "points": spool.points,
            "bytes": spool.bytes,
            "max_bytes": spool.max_bytes,
            "dead_letters": spool.dead_letter_count,
            "oldest_dead_letters": [_dead_letter(letter) for letter in dead_letters],
        },
    }

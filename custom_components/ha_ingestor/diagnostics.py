"""Diagnostics: the entry's settings (secrets redacted) and the pipeline's counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.core import HomeAssistant

from . import HaIngestorConfigEntry
from .const import CONF_PASSWORD, CONF_TOKEN, CONF_URL, CONF_USERNAME
from .line_protocol import elide_field_values
from .pipeline import Pipeline
from .privacy import CONF_PSEUDONYM_KEY
from .spool import DeadLetter
from .stats import IngestorStats
from .writer import parse_url

TO_REDACT = {CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME, CONF_PSEUDONYM_KEY}
OPTIONS_TO_REDACT = {"webhook_secret"}


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
    options = data.options.model_dump(mode="json")
    if options.get("webhook_url"):
        # Receivers often take a token in the URL itself.
        options["webhook_url"] = _without_query(options["webhook_url"])
    result = {
        "entry": {
            "data": _redact_entry_data(entry.data),
            "options": async_redact_data(options, OPTIONS_TO_REDACT),
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
    if data.webhook is not None and data.webhook_stats is not None:
        result["webhook"] = _sink(data.webhook, data.webhook_stats)
    if data.republisher is not None:
        result["republish"] = {
            "connected": data.republisher.stats.connected,
            "sent": data.republisher.stats.sent,
            "dropped": data.republisher.stats.dropped,
        }
    return result


def _sink(pipeline: Pipeline, stats: IngestorStats) -> dict[str, Any]:
    """A JSON sink's delivery: what it holds, sent and dropped."""
    spool = pipeline.spool
    return {
        "connected": pipeline.connected,
        "held_in_memory": pipeline.held,
        "backing_off": pipeline.backing_off,
        "paused_for_credentials": pipeline.paused,
        "stats": stats.as_dict(),
        "spool": {
            "available": spool.available,
            "error": pipeline.spool_error,
            "points": spool.points,
            "bytes": spool.bytes,
            "dead_letters": spool.dead_letter_count,
        },
    }


def _without_query(url: str) -> str:
    parsed = parse_url(url)
    return str(parsed.with_user(None).with_query(None).with_fragment(None))

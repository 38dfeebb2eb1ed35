"""Repair issues HA Ingestor raises and clears, one set per config entry."""

from __future__ import annotations

from pathlib import Path

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

SPOOL_FULL = "spool_full"
AUTH_FAILED = "auth_failed"
TARGET_MISSING = "target_missing"
SPOOL_UNAVAILABLE = "spool_unavailable"
SPOOL_CORRUPT = "spool_corrupt"
POINTS_DROPPED = "points_dropped"
INFLUXDB_UNREACHABLE = "influxdb_unreachable"
PIPELINE_KINDS = (
    INFLUXDB_UNREACHABLE,
    SPOOL_FULL,
    AUTH_FAILED,
    TARGET_MISSING,
    SPOOL_UNAVAILABLE,
    SPOOL_CORRUPT,
    POINTS_DROPPED,
)
# The webhook's pipeline raises the same kinds, under this prefix.
WEBHOOK = "webhook_"
ALL = PIPELINE_KINDS + tuple(WEBHOOK + kind for kind in PIPELINE_KINDS)


@callback
def async_raise(
    hass: HomeAssistant, entry: ConfigEntry, kind: str, **placeholders: str
) -> None:
    """Create (or update) one of the entry's repair issues."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        f"{kind}_{entry.entry_id}",
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=kind,
        translation_placeholders={"title": entry.title, **placeholders},
    )


@callback
def async_clear(hass: HomeAssistant, entry: ConfigEntry, *kinds: str) -> None:
    """Remove the entry's repair issues of these kinds."""
    for kind in kinds:
        ir.async_delete_issue(hass, DOMAIN, f"{kind}_{entry.entry_id}")


async def async_clear_resolved_corrupt_spool(
    hass: HomeAssistant, entry: ConfigEntry, prefix: str = ""
) -> None:
    """The damaged-spool repair clears once the user deleted the moved-aside file."""
    kind = prefix + SPOOL_CORRUPT
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"{kind}_{entry.entry_id}")
    if issue is None:
        return
    path = Path((issue.translation_placeholders or {}).get("path", ""))
    if not await hass.async_add_executor_job(path.is_file):
        async_clear(hass, entry, kind)

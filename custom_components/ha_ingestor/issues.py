"""Repair issues HA Ingestor raises and clears, one set per config entry."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

SPOOL_FULL = "spool_full"
AUTH_FAILED = "auth_failed"
TARGET_MISSING = "target_missing"


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

"""System health: per entry, the server, whether writes succeed and the backlog.

Reachability is the last write's outcome rather than a probe of its own: a write
goes through the entry's TLS settings and credentials, which HA's generic URL
check would not use (it would call a server with a private CA unreachable).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from homeassistant.components import system_health
from homeassistant.core import HomeAssistant, callback

from .const import CONF_URL, DOMAIN
from .writer import parse_url

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry


@callback
def async_register(
    hass: HomeAssistant, register: system_health.SystemHealthRegistration
) -> None:
    """Register the info callback."""
    register.async_register_info(
        system_health_info, f"/config/integrations/integration/{DOMAIN}"
    )


async def system_health_info(hass: HomeAssistant) -> dict[str, Any]:
    """One entry's info as is; with several, each value lists them by title."""
    entries: list[HaIngestorConfigEntry] = hass.config_entries.async_loaded_entries(
        DOMAIN
    )
    infos = [(entry.title, _entry_info(entry)) for entry in entries]
    if len(infos) == 1:
        return infos[0][1]
    keys = dict.fromkeys(key for _, info in infos for key in info)
    return {
        key: "; ".join(
            f"{title}: {_text(info[key])}" for title, info in infos if key in info
        )
        for key in keys
    }


def _entry_info(entry: HaIngestorConfigEntry) -> dict[str, Any]:
    pipeline = entry.runtime_data.pipeline
    info: dict[str, Any] = {
        "server": str(parse_url(entry.data[CONF_URL]).with_user(None)),
    }
    if version := entry.runtime_data.writer.server_version:
        info["server_version"] = version
    if pipeline.connected is not None:  # None: no write was tried yet
        info["writes_succeed"] = pipeline.connected
    info["queued_points"] = pipeline.held
    info["spooled_points"] = pipeline.spool.points
    if last_write := entry.runtime_data.stats.last_write:
        info["last_write"] = last_write
    return info


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

"""WebSocket commands (admin only), a public contract: a live stream of enriched
events, the recent ones, each entry's counters, and the home's relationships.

Commands that concern one entry take ``config_entry_id``; it may be left out
while exactly one entry is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.websocket_api import async_register_command
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.decorators import (
    require_admin,
    websocket_command,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback

from .const import DOMAIN
from .stream import StreamFilter, Subscriber
from .topology import relationships

try:  # Home Assistant 2026.x validates with probatio, older releases voluptuous
    import probatio as vol
except ImportError:  # pragma: no cover - exercised by the minimum-version run
    import voluptuous as vol  # type: ignore[no-redef]

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry

RECENT_DEFAULT: Final = 100
RECENT_MAX: Final = 1000
_ENTRY = vol.Optional("config_entry_id")
_STRINGS = vol.All([str], vol.Length(max=100))


@callback
def async_register_commands(hass: HomeAssistant) -> None:
    """Register the commands (once, for every entry)."""
    for command in (_subscribe, _recent, _stats, _relationships):
        async_register_command(hass, command)


def _entry(
    hass: HomeAssistant,
    connection: ActiveConnection,
    msg: dict[str, Any],
) -> HaIngestorConfigEntry | None:
    """The loaded entry a message targets; None once an error was sent."""
    loaded: list[HaIngestorConfigEntry] = [
        entry
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.state is ConfigEntryState.LOADED
    ]
    if (entry_id := msg.get("config_entry_id")) is not None:
        loaded = [entry for entry in loaded if entry.entry_id == entry_id]
        if not loaded:
            connection.send_error(
                msg["id"], "entry_not_loaded", f"No loaded entry {entry_id}"
            )
            return None
    if len(loaded) != 1:
        connection.send_error(
            msg["id"],
            "entry_required" if loaded else "entry_not_loaded",
            "Give config_entry_id: several entries are loaded"
            if loaded
            else "No HA Ingestor entry is loaded",
        )
        return None
    return loaded[0]


def _pending(connection: ActiveConnection) -> tuple[int, int] | None:
    """Messages and bytes waiting in Home Assistant's queue to this connection.
    HA has no public way to ask, so this reads its handler's queue where it
    exists and says "unknown" elsewhere (the subscriber's own buffer still
    bounds memory)."""
    handler = getattr(connection.send_message, "__self__", None)
    queue = getattr(handler, "_message_queue", None)
    if queue is None:
        return None
    return len(queue), sum(map(len, queue))


@websocket_command(
    {
        vol.Required("type"): "ha_ingestor/subscribe",
        _ENTRY: str,
        vol.Optional("event_types"): _STRINGS,
        vol.Optional("entity_globs"): _STRINGS,
        vol.Optional("areas"): _STRINGS,
    }
)
@require_admin
@callback
def _subscribe(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """Stream enriched events that match the filters, live."""
    if (entry := _entry(hass, connection, msg)) is None:
        return
    subscriber = Subscriber(
        send=connection.send_message,
        message_id=msg["id"],
        filter=StreamFilter.build(
            msg.get("event_types", ()),
            msg.get("entity_globs", ()),
            msg.get("areas", ()),
        ),
        pending=lambda: _pending(connection),
    )
    connection.subscriptions[msg["id"]] = entry.runtime_data.sinks.stream.subscribe(
        subscriber
    )
    connection.send_result(msg["id"])


@websocket_command(
    {
        vol.Required("type"): "ha_ingestor/recent",
        _ENTRY: str,
        vol.Optional("limit", default=RECENT_DEFAULT): vol.All(
            int, vol.Range(min=1, max=RECENT_MAX)
        ),
    }
)
@require_admin
@callback
def _recent(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """The last recorded events, oldest first."""
    if (entry := _entry(hass, connection, msg)) is None:
        return
    events = entry.runtime_data.sinks.recent_events(msg["limit"])
    connection.send_result(msg["id"], {"events": events})


@websocket_command({vol.Required("type"): "ha_ingestor/stats"})
@require_admin
@callback
def _stats(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """Each loaded entry's counters, by entry id."""
    entries: dict[str, Any] = {}
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.state is ConfigEntryState.LOADED:
            entries[entry.entry_id] = _entry_stats(entry)
    connection.send_result(msg["id"], {"entries": entries})


def _entry_stats(entry: HaIngestorConfigEntry) -> dict[str, Any]:
    data = entry.runtime_data
    pipeline, spool = data.pipeline, data.pipeline.spool
    stats: dict[str, Any] = {
        "title": entry.title,
        "connected": pipeline.connected,
        "held_in_memory": pipeline.held,
        "spool_points": spool.points,
        "spool_bytes": spool.bytes,
        "dead_letters": spool.dead_letter_count,
        "counters": data.stats.as_dict(),
        "stream": {
            "subscribers": len(data.sinks.stream.subscribers),
            "dropped": data.sinks.stream.dropped,
        },
    }
    if data.webhook is not None and data.webhook_stats is not None:
        stats["webhook"] = {
            "connected": data.webhook.connected,
            "held_in_memory": data.webhook.held,
            "spool_points": data.webhook.spool.points,
            "sent": data.webhook_stats.points_written,
            "dropped": data.webhook_stats.dropped_points,
        }
    if data.republisher is not None:
        stats["republish"] = {
            "sent": data.republisher.stats.sent,
            "dropped": data.republisher.stats.dropped,
        }
    return stats


@websocket_command({vol.Required("type"): "ha_ingestor/relationships"})
@require_admin
@callback
def _relationships(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """The home's graph: floors, areas, devices with their parents and entities,
    and what each automation and script references."""
    connection.send_result(msg["id"], relationships(hass))

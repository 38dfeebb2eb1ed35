"""The base of the health entities: one service device per config entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_URL, DOMAIN
from .coordinator import IngestorCoordinator
from .writer import parse_url

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry


class IngestorEntity(CoordinatorEntity[IngestorCoordinator]):
    """An entity of an entry's device, updated from its coordinator."""

    _attr_has_entity_name = True

    def __init__(
        self, entry: HaIngestorConfigEntry, description: EntityDescription
    ) -> None:
        super().__init__(entry.runtime_data.coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            entry_type=DeviceEntryType.SERVICE,
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer="HA Ingestor",
            # A loaded entry's URL parses; credentials in it are never shown.
            configuration_url=str(parse_url(entry.data[CONF_URL]).with_user(None)),
        )


# The health entities of each JSON sink, by key.
SINK_ENTITY_KEYS = {
    "webhook": ("webhook_points_sent", "webhook_points_dropped", "webhook_connected"),
    "republish": ("republish_sent", "republish_dropped", "republish_connected"),
}


@callback
def async_remove_stale_sink_entities(
    hass: HomeAssistant, entry: HaIngestorConfigEntry
) -> None:
    """Remove the entities of a sink that was turned off: they would otherwise
    linger as "no longer provided"."""
    registry = er.async_get(hass)
    active = active_sinks(entry)
    for sink, keys in SINK_ENTITY_KEYS.items():
        if sink in active:
            continue
        for key in keys:
            for platform in ("sensor", "binary_sensor"):
                if entity_id := registry.async_get_entity_id(
                    platform, DOMAIN, f"{entry.entry_id}_{key}"
                ):
                    registry.async_remove(entity_id)


def active_sinks(entry: HaIngestorConfigEntry) -> set[str]:
    """The JSON sinks that are on, by the name entity descriptions use."""
    data = entry.runtime_data
    sinks = set()
    if data.webhook is not None:
        sinks.add("webhook")
    if data.republisher is not None:
        sinks.add("republish")
    return sinks

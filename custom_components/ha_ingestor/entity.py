"""The base of the health entities: one service device per config entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def active_sinks(entry: HaIngestorConfigEntry) -> set[str]:
    """The JSON sinks that are on, by the name entity descriptions use."""
    data = entry.runtime_data
    sinks = set()
    if data.webhook is not None:
        sinks.add("webhook")
    if data.republisher is not None:
        sinks.add("republish")
    return sinks

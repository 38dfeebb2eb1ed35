"""The connection binary sensor: on while the last write attempt succeeded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined]
    # Re-exported on every supported release (2025.4 has no const module).
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import IngestorHealth
from .entity import IngestorEntity, active_sinks

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IngestorBinarySensorDescription(BinarySensorEntityDescription):
    """A yes/no of the latest snapshot (None: not known yet)."""

    is_on_fn: Callable[[IngestorHealth], bool | None]
    # The sink whose connection this is: added only when it is on.
    sink: str | None = None


BINARY_SENSORS: tuple[IngestorBinarySensorDescription, ...] = (
    IngestorBinarySensorDescription(
        key="connected",
        translation_key="connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        is_on_fn=lambda health: health.connected,
    ),
    IngestorBinarySensorDescription(
        key="webhook_connected",
        translation_key="webhook_connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        is_on_fn=lambda health: health.webhook_connected,
        sink="webhook",
    ),
    IngestorBinarySensorDescription(
        key="republish_connected",
        translation_key="republish_connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        is_on_fn=lambda health: health.republish_connected,
        sink="republish",
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HaIngestorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's health binary sensors (a sink's only while it is on)."""
    sinks = active_sinks(entry)
    async_add_entities(
        IngestorBinarySensor(entry, description)
        for description in BINARY_SENSORS
        if description.sink is None or description.sink in sinks
    )


class IngestorBinarySensor(IngestorEntity, BinarySensorEntity):
    """A yes/no of the latest snapshot."""

    entity_description: IngestorBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """The value as of the last refresh."""
        return self.entity_description.is_on_fn(self.coordinator.data)

"""Health sensors: what the pipeline received, wrote, dropped and still holds.

Counters keep counting across reloads and restarts: each shows the count it
restored at setup plus the pipeline's count since.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorExtraStoredData,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfInformation,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .coordinator import IngestorHealth
from .entity import IngestorEntity, active_sinks

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry

PARALLEL_UPDATES = 0

EVENTS = "events"
POINTS = "points"


@dataclass(frozen=True, kw_only=True)
class IngestorSensorDescription(SensorEntityDescription):
    """A value of the latest snapshot."""

    value_fn: Callable[[IngestorHealth], StateType | datetime]
    attributes_fn: Callable[[IngestorHealth], dict[str, str | int] | None] | None = None


@dataclass(frozen=True, kw_only=True)
class IngestorCounterDescription(SensorEntityDescription):
    """A count since setup, added to the count restored at setup."""

    state_class: SensorStateClass | None = SensorStateClass.TOTAL_INCREASING
    value_fn: Callable[[IngestorHealth], int]
    attributes_fn: Callable[[IngestorHealth], dict[str, str | None]] | None = None
    # The sink whose counter this is ("webhook", "republish"): added only when on.
    sink: str | None = None


COUNTERS: tuple[IngestorCounterDescription, ...] = (
    IngestorCounterDescription(
        key="events_received",
        translation_key="events_received",
        native_unit_of_measurement=EVENTS,
        value_fn=lambda health: health.events_received,
    ),
    IngestorCounterDescription(
        key="points_written",
        translation_key="points_written",
        native_unit_of_measurement=POINTS,
        value_fn=lambda health: health.points_written,
    ),
    IngestorCounterDescription(
        key="write_errors",
        translation_key="write_errors",
        native_unit_of_measurement="errors",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda health: health.write_errors,
    ),
    IngestorCounterDescription(
        key="points_dropped",
        translation_key="points_dropped",
        native_unit_of_measurement=POINTS,
        value_fn=lambda health: health.points_dropped,
        attributes_fn=lambda health: {"last_reason": health.last_drop_reason},
    ),
    IngestorCounterDescription(
        key="invalid_events",
        translation_key="invalid_events",
        native_unit_of_measurement=EVENTS,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda health: health.invalid_events,
    ),
    IngestorCounterDescription(
        key="deduplicated",
        translation_key="deduplicated",
        native_unit_of_measurement=EVENTS,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda health: health.deduplicated,
    ),
    IngestorCounterDescription(
        key="webhook_points_sent",
        translation_key="webhook_points_sent",
        native_unit_of_measurement=EVENTS,
        value_fn=lambda health: health.webhook_sent,
        sink="webhook",
    ),
    IngestorCounterDescription(
        key="webhook_points_dropped",
        translation_key="webhook_points_dropped",
        native_unit_of_measurement=EVENTS,
        value_fn=lambda health: health.webhook_dropped,
        sink="webhook",
    ),
    IngestorCounterDescription(
        key="republish_sent",
        translation_key="republish_sent",
        native_unit_of_measurement=EVENTS,
        value_fn=lambda health: health.republish_sent,
        sink="republish",
    ),
    IngestorCounterDescription(
        key="republish_dropped",
        translation_key="republish_dropped",
        native_unit_of_measurement=EVENTS,
        value_fn=lambda health: health.republish_dropped,
        sink="republish",
    ),
)

SENSORS: tuple[IngestorSensorDescription, ...] = (
    IngestorSensorDescription(
        key="events_rate",
        translation_key="events_rate",
        native_unit_of_measurement="events/min",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda health: health.events_rate,
    ),
    IngestorSensorDescription(
        key="queue_depth",
        translation_key="queue_depth",
        native_unit_of_measurement=POINTS,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda health: health.queue_depth,
    ),
    IngestorSensorDescription(
        key="spool_points",
        translation_key="spool_points",
        native_unit_of_measurement=POINTS,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda health: health.spool_points,
    ),
    IngestorSensorDescription(
        key="spool_size",
        translation_key="spool_size",
        device_class=SensorDeviceClass.DATA_SIZE,
        native_unit_of_measurement=UnitOfInformation.BYTES,
        # As the "Largest spool on disk (MB)" option counts: 2**20 bytes.
        suggested_unit_of_measurement=UnitOfInformation.MEBIBYTES,
        suggested_display_precision=1,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda health: health.spool_bytes,
    ),
    IngestorSensorDescription(
        key="dead_letters",
        translation_key="dead_letters",
        native_unit_of_measurement=POINTS,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda health: health.dead_letters,
    ),
    IngestorSensorDescription(
        key="last_write",
        translation_key="last_write",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda health: health.last_write,
    ),
    IngestorSensorDescription(
        key="write_latency",
        translation_key="write_latency",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda health: health.write_latency_ms,
    ),
    IngestorSensorDescription(
        key="oldest_unsent",
        translation_key="oldest_unsent",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda health: health.oldest_unsent_s,
    ),
    IngestorSensorDescription(
        key="backfill_progress",
        translation_key="backfill_progress",
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=1,
        value_fn=lambda health: health.backfill.percent if health.backfill else None,
        attributes_fn=lambda health: (
            health.backfill.attributes() if health.backfill else None
        ),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HaIngestorConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's health sensors (a sink's only while it is on)."""
    sinks = active_sinks(entry)
    async_add_entities(
        [
            *(
                IngestorCounter(entry, description)
                for description in COUNTERS
                if description.sink is None or description.sink in sinks
            ),
            *(IngestorSensor(entry, description) for description in SENSORS),
        ]
    )


class IngestorSensor(IngestorEntity, SensorEntity):
    """A value of the latest snapshot."""

    entity_description: IngestorSensorDescription

    @property
    def native_value(self) -> StateType | datetime:
        """The value as of the last refresh."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, str | int] | None:
        """The attributes as of the last refresh, for those that have any."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return attributes_fn(self.coordinator.data)


class IngestorCounter(IngestorEntity, RestoreSensor):
    """A count that goes on from where the last run left it."""

    entity_description: IngestorCounterDescription
    _restored = 0
    _restored_attributes: Mapping[str, Any] = {}

    async def async_added_to_hass(self) -> None:
        """Take up the count (and attributes) the last run ended with."""
        await super().async_added_to_hass()
        if (data := await self.async_get_last_sensor_data()) is not None and (
            isinstance(data.native_value, int | float | Decimal)
        ):
            self._restored = int(data.native_value)
        if (state := await self.async_get_last_state()) is not None:
            self._restored_attributes = state.attributes

    @property
    def native_value(self) -> int:
        """The count as of the last refresh."""
        return self._restored + self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, str | None] | None:
        """What this run knows, else what the last one knew."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return {
            name: self._restored_attributes.get(name) if value is None else value
            for name, value in attributes_fn(self.coordinator.data).items()
        }

    @property
    def extra_restore_state_data(self) -> SensorExtraStoredData:
        """The count now, not as of the last refresh: what was counted since (the
        unload's last write too) carries over."""
        return SensorExtraStoredData(
            self._restored
            + self.entity_description.value_fn(self.coordinator.snapshot()),
            self.native_unit_of_measurement,
        )

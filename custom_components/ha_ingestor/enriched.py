"""The enriched event as JSON: the one form every JSON sink receives (MQTT
republish, the webhook, later the live stream), documented in the README.

Built only when such a sink is on; the InfluxDB path builds its lines directly
and never calls this. Privacy is applied here as in the lines: hidden attributes
and location keys are gone, users are pseudonyms when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from homeassistant.core import Context, Event, State

from .enrichment import Enricher
from .models import IngestorOptions
from .points import attribute_rules, number
from .privacy import Privacy

if TYPE_CHECKING:
    from .context import ContextEntities

# The registry context, as the JSON form names it (EntityInfo.tags' keys).
REGISTRY_KEYS = (
    "area",
    "floor",
    "device",
    "device_id",
    "manufacturer",
    "model",
    "integration",
    "parent_device",
    "device_class",
    "unit",
)


def iso_time(timestamp: float) -> str:
    """ISO 8601 in UTC to the microsecond, e.g. 2026-12-06T08:00:00.250000Z."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class EnrichedEvents:
    """Builds the JSON form of state changes, bus events and MQTT messages."""

    def __init__(
        self,
        options: IngestorOptions,
        enricher: Enricher,
        privacy: Privacy,
        context: ContextEntities | None,
    ) -> None:
        self._enricher = enricher
        self._privacy = privacy
        self._context = context
        self._include, self._exclude = attribute_rules(options, privacy)

    def state(self, state: State) -> dict[str, Any]:
        """A recorded state change."""
        entity_id = state.entity_id
        info = self._enricher.entity(entity_id, state.attributes)
        tags = info.tags or {}
        event: dict[str, Any] = {
            "time": iso_time(state.last_updated_timestamp),
            "event_type": "state_changed",
            "entity_id": entity_id,
            "domain": state.domain,
            "state": state.state,
        }
        if (value := number(state.state)) is not None:
            event["value"] = value
        if friendly_name := state.attributes.get("friendly_name"):
            event["friendly_name"] = str(friendly_name)
        event["attributes"] = self._attributes(state.attributes)
        for key in REGISTRY_KEYS:
            if (tag := tags.get(key)) is not None:
                event[key] = tag
        labels = tags.get("labels")
        event["labels"] = labels.split(",") if labels else []
        self._add_context(event, state.context)
        if self._context is not None:
            event["context"] = self._context.values
        return event

    def included(self, entity_id: str, attributes: Mapping[str, Any]) -> bool:
        """Whether the filters record this entity."""
        return self._enricher.entity(entity_id, attributes).included

    def area_id(self, entity_id: str, attributes: Mapping[str, Any]) -> str | None:
        """The id of the entity's area (its own, else its device's)."""
        return self._enricher.entity(entity_id, attributes).area_id

    def bus_event(self, event: Event[Any]) -> dict[str, Any]:
        """Any other bus event, its data as Home Assistant fired it (privacy
        applied)."""
        data = event.data
        result: dict[str, Any] = {
            "time": iso_time(event.time_fired_timestamp),
            "event_type": event.event_type,
        }
        entity_id = data.get("entity_id")
        if isinstance(entity_id, str) and "." in entity_id:
            result["entity_id"] = entity_id
            result["domain"] = entity_id.partition(".")[0]
        elif isinstance(domain := data.get("domain"), str):
            result["domain"] = domain
        result["data"] = self._privacy.scrub(dict(data))
        self._add_context(result, event.context)
        return result

    def mqtt(
        self, topic: str, payload: str, timestamp: float, retained: bool
    ) -> dict[str, Any]:
        """An MQTT message as recorded (its payload after privacy)."""
        event: dict[str, Any] = {
            "time": iso_time(timestamp),
            "event_type": "mqtt_message",
            "topic": topic,
            "payload": payload,
        }
        if (value := number(payload)) is not None:
            event["value"] = value
        if retained:
            event["retained"] = True
        return event

    def _attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        include, exclude = self._include, self._exclude
        kept = {
            name: value
            for name, value in attributes.items()
            if name not in exclude and (not include or name in include)
        }
        return self._privacy.scrub(kept)  # type: ignore[no-any-return]

    def _add_context(self, event: dict[str, Any], context: Context) -> None:
        if (user := self._enricher.user_name(context.user_id)) is not None:
            event["user"] = user
        event["context_id"] = context.id
        if context.parent_id:
            event["parent_context_id"] = context.parent_id
        if (automation := self._enricher.caused_by(context)) is not None:
            event["automation"] = automation

"""The JSON sinks' fan-out: each recorded event is built as an enriched event
once, encoded once, and handed to every JSON sink that is on.

The webhook gets it through its own pipeline (durable: batched, retried,
spooled), MQTT republish through its bounded live queue, WebSocket subscribers
through the live stream. MQTT-captured messages are never republished:
republishing what we subscribed to could loop. Capture builds enriched events
only while ``active``; the ring of recent events keeps what was captured (cheap
references) and is enriched only when asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
import json
from typing import Any, Final, NamedTuple

from homeassistant.core import Event, State, callback
from homeassistant.helpers.json import json_bytes

from .enriched import EnrichedEvents
from .pipeline import Pipeline
from .republish import Republisher
from .stream import LiveStream

RECENT_MAX: Final = 1000


class MqttMessage(NamedTuple):
    """An MQTT message as recorded, for the ring of recent events."""

    topic: str
    payload: str
    timestamp: float
    retained: bool


def encode(event: dict[str, Any]) -> bytes:
    """Compact JSON with Home Assistant's encoder (which knows datetimes, sets
    and HA's own types); anything else becomes its repr."""
    try:
        return json_bytes(event)
    except (TypeError, ValueError):
        return json.dumps(
            event, default=repr, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8", "replace")


class JsonSinks:
    """Hands enriched events to the webhook pipeline, the republisher and the
    live stream, and keeps the ring of recent events."""

    def __init__(
        self,
        events: EnrichedEvents,
        webhook: Pipeline | None,
        republisher: Republisher | None,
        stream: LiveStream,
    ) -> None:
        self.events = events
        self._webhook = webhook
        self._republisher = republisher
        self.stream = stream
        # States, bus events and MQTT messages as captured, newest last.
        self.recent: deque[State | Event[Any] | MqttMessage] = deque(maxlen=RECENT_MAX)

    @property
    def active(self) -> bool:
        """Whether any sink wants enriched events now."""
        return (
            self._webhook is not None
            or self._republisher is not None
            or bool(self.stream.subscribers)
        )

    @callback
    def state(self, state: State) -> None:
        """A recorded state change."""
        enriched = self.events.state(state)
        area_id = (
            self.events.area_id(state.entity_id, state.attributes)
            if self.stream.subscribers
            else None
        )
        self._send(enriched, state.entity_id, "state_changed", area_id)

    @callback
    def bus_event(self, event: Event[Any]) -> None:
        """A recorded bus event."""
        enriched = self.events.bus_event(event)
        self._send(enriched, enriched.get("entity_id"), str(event.event_type), None)

    @callback
    def mqtt(self, message: MqttMessage) -> None:
        """A recorded MQTT message: to the webhook and the stream, not MQTT."""
        enriched = self.events.mqtt(*message)
        data = encode(enriched)
        if self._webhook is not None:
            self._webhook.add(data.decode("utf-8", "replace"))
        if self.stream.subscribers:
            self.stream.publish(enriched, data, None)

    def recent_events(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` recorded events, oldest first, enriched now (with
        today's registries and context entities)."""
        found: list[dict[str, Any]] = []
        for item in self._newest_first():
            if len(found) >= limit:
                break
            if (enriched := self._enrich(item)) is not None:
                found.append(enriched)
        found.reverse()
        return found

    def _newest_first(self) -> Iterator[State | Event[Any] | MqttMessage]:
        # A copy: building events must not see the ring change under it.
        items: list[State | Event[Any] | MqttMessage] = list(self.recent)
        items.reverse()
        return iter(items)

    def _enrich(self, item: State | Event[Any] | MqttMessage) -> dict[str, Any] | None:
        if isinstance(item, State):
            if not self.events.included(item.entity_id, item.attributes):
                return None
            return self.events.state(item)
        if isinstance(item, MqttMessage):
            return self.events.mqtt(*item)
        return self.events.bus_event(item)

    def _send(
        self,
        enriched: dict[str, Any],
        entity_id: str | None,
        event_type: str,
        area_id: str | None,
    ) -> None:
        data = encode(enriched)
        if self._webhook is not None:
            self._webhook.add(data.decode("utf-8", "replace"))
        if self._republisher is not None:
            self._republisher.publish(entity_id, event_type, data)
        if self.stream.subscribers:
            self.stream.publish(enriched, data, area_id)

"""The JSON sinks' fan-out: each recorded event is built as an enriched event
once, encoded once, and handed to every JSON sink that is on.

The webhook gets it through its own pipeline (durable: batched, retried,
spooled), MQTT republish through its bounded live queue. MQTT-captured messages
are never republished: republishing what we subscribed to could loop.
"""

from __future__ import annotations

import json
from typing import Any

from homeassistant.core import Event, State, callback
from homeassistant.helpers.json import json_bytes

from .enriched import EnrichedEvents
from .pipeline import Pipeline
from .republish import Republisher


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
    """Hands enriched events to the webhook pipeline and the republisher."""

    def __init__(
        self,
        events: EnrichedEvents,
        webhook: Pipeline | None,
        republisher: Republisher | None,
    ) -> None:
        self.events = events
        self._webhook = webhook
        self._republisher = republisher

    @callback
    def state(self, state: State) -> None:
        """A recorded state change."""
        self._send(self.events.state(state), state.entity_id, "state_changed")

    @callback
    def bus_event(self, event: Event[Any]) -> None:
        """A recorded bus event."""
        enriched = self.events.bus_event(event)
        self._send(enriched, enriched.get("entity_id"), str(event.event_type))

    @callback
    def mqtt(self, topic: str, payload: str, timestamp: float, retained: bool) -> None:
        """A recorded MQTT message: to the webhook only."""
        if self._webhook is not None:
            data = encode(self.events.mqtt(topic, payload, timestamp, retained))
            self._webhook.add(data.decode("utf-8", "replace"))

    def _send(
        self, enriched: dict[str, Any], entity_id: str | None, event_type: str
    ) -> None:
        data = encode(enriched)
        if self._webhook is not None:
            self._webhook.add(data.decode("utf-8", "replace"))
        if self._republisher is not None:
            self._republisher.publish(entity_id, event_type, data)

"""Context entities: the surroundings of every state change (the weather, the
outdoor temperature, the sun), attached to each point as ``ctx_*`` fields.

Read from the state machine when a context entity changes, never per event: the
encoded fields are cached here and go into each entity's cached shared fields,
which a change invalidates (``on_change``). A field keeps one type, like every
other field: a numeric state is the float ``ctx_<object>``, any other state the
string ``ctx_<object>_str``; chosen attributes are floats, and only when numeric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback

from .line_protocol import LineEncoder
from .models import IngestorOptions
from .points import number
from .privacy import Privacy


def field_name(entity_id: str) -> str:
    """``ctx_`` and the entity id with its dot as an underscore."""
    return "ctx_" + entity_id.replace(".", "_")


class ContextEntities:
    """The configured context entities' current values, encoded once per change."""

    def __init__(
        self,
        hass: HomeAssistant,
        options: IngestorOptions,
        encoder: LineEncoder,
        privacy: Privacy,
        on_change: Callable[[], None],
    ) -> None:
        self._hass = hass
        self._entity_ids = options.context_entities
        self._attributes = tuple(
            name
            for name in options.context_attributes
            if name not in privacy.hidden_attributes
        )
        self._encoder = encoder
        self._on_change = on_change
        # ",ctx_…=…" for line protocol; entity id -> values for the JSON form.
        self.line_fields = ""
        self.values: dict[str, dict[str, Any]] = {}

    @callback
    def async_start(self) -> Callable[[], None]:
        """Read the current states and follow their changes. A bus listener of
        its own, registered before capture's: bus callbacks run in the order
        they were registered, so a context entity's own change (and any change
        after it) already sees its new value. (A state-change tracker may run a
        loop turn later on older Home Assistant releases.)"""
        self._refresh()
        watched = frozenset(self._entity_ids)

        @callback
        def _is_context(event_data: EventStateChangedData) -> bool:
            return event_data["entity_id"] in watched

        return self._hass.bus.async_listen(
            EVENT_STATE_CHANGED, self._on_state_changed, event_filter=_is_context
        )

    @callback
    def _on_state_changed(self, event: Event[EventStateChangedData]) -> None:
        self._refresh()
        self._on_change()

    def _refresh(self) -> None:
        fields: dict[str, Any] = {}
        values: dict[str, dict[str, Any]] = {}
        for entity_id in self._entity_ids:
            state = self._hass.states.get(entity_id)
            if state is None:
                continue
            name = field_name(entity_id)
            value = number(state.state)
            entry: dict[str, Any] = {"state": state.state}
            if value is not None:
                fields[name] = entry["value"] = value
            else:
                fields[f"{name}_str"] = state.state
            for attribute in self._attributes:
                if (raw := state.attributes.get(attribute)) is None or isinstance(
                    raw, str
                ):
                    continue
                if (numeric := number(raw)) is not None:
                    fields[f"{name}_{attribute}"] = entry[attribute] = numeric
            values[entity_id] = entry
        encoded = self._encoder.fields(fields)
        self.line_fields = f",{encoded}" if encoded else ""
        self.values = values

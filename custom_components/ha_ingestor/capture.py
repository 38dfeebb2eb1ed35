"""Capture: listeners on Home Assistant's event bus and MQTT subscriptions.

Every listener is a ``@callback`` that does no I/O: it turns the event into a line
and hands it to the pipeline's queue. Nothing raised here may reach Home
Assistant's bus, so each listener counts and logs (once per kind) what it cannot
handle and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
import time
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import LOGGER
from .models import IngestorOptions
from .pipeline import Pipeline
from .points import PointBuilder
from .stats import IngestorStats

if TYPE_CHECKING:
    from homeassistant.components.mqtt import ReceiveMessage

MQTT_DOMAIN = "mqtt"


class Deduplicator:
    """Drops a repeat of the same value for the same key within a time window."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._last: dict[Hashable, tuple[Any, float]] = {}

    def repeated(self, key: Hashable, value: Any, now: float) -> bool:
        """True when ``value`` equals the last one kept for ``key`` in the window."""
        last = self._last.get(key)
        if last is not None and now - last[1] < self._window and last[0] == value:
            return True
        self._last[key] = (value, now)
        return False


class Capture:
    """Subscribes to the configured events and MQTT topics."""

    def __init__(
        self,
        hass: HomeAssistant,
        options: IngestorOptions,
        builder: PointBuilder,
        pipeline: Pipeline,
        stats: IngestorStats,
    ) -> None:
        self._hass = hass
        self._options = options
        self._builder = builder
        self._pipeline = pipeline
        self._stats = stats
        self._dedup = (
            Deduplicator(options.dedup_window) if options.dedup_window else None
        )
        self._mqtt_unsubs: list[Callable[[], None]] = []
        self._mqtt_active = False
        self._unsubs: list[Callable[[], None]] = []

    @callback
    def async_start(self) -> None:
        """Start listening."""
        self._unsubs = unsubs = [
            self._hass.bus.async_listen(
                event_type,
                self._on_state_changed
                if event_type == EVENT_STATE_CHANGED
                else self._on_event,
            )
            for event_type in self._options.event_types
        ]
        if self._options.mqtt_topics:
            unsubs.append(
                async_dispatcher_connect(
                    self._hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._on_entry_changed
                )
            )
            unsubs.append(self._async_unsubscribe_mqtt)
            for entry in self._hass.config_entries.async_entries(MQTT_DOMAIN):
                self._on_entry_changed(ConfigEntryChange.UPDATED, entry)

    @callback
    def async_stop(self) -> None:
        """Stop listening (idempotent)."""
        while self._unsubs:
            self._unsubs.pop()()

    def _invalid(self, kind: str, err: Exception) -> None:
        self._stats.invalid += 1
        self._stats.log_once(
            f"invalid_{kind}_{type(err).__name__}",
            "Skipped a %s that could not be recorded (%s: %s); further ones are "
            "counted in diagnostics",
            kind,
            type(err).__name__,
            err,
        )

    @callback
    def _on_state_changed(self, event: Event[Any]) -> None:
        self._stats.events_received += 1
        try:
            state = event.data["new_state"]
            if state is None:  # the entity was removed
                return
            if self._dedup is not None and self._dedup.repeated(
                state.entity_id,
                (state.state, state.attributes),
                state.last_updated_timestamp,
            ):
                self._stats.deduplicated += 1
                return
            point = self._builder.state_line(state)
        except Exception as err:
            self._invalid("state change", err)
            return
        if point is not None:
            self._pipeline.add_point(*point)

    @callback
    def _on_event(self, event: Event[Any]) -> None:
        self._stats.events_received += 1
        try:
            line = self._builder.event_line(event)
        except Exception as err:
            self._invalid(f"{event.event_type} event", err)
            return
        if line is not None:
            self._pipeline.add(line)

    @callback
    def _on_mqtt_message(self, message: ReceiveMessage) -> None:
        self._stats.events_received += 1
        now = time.time()
        try:
            if self._dedup is not None and self._dedup.repeated(
                ("mqtt", message.topic), message.payload, now
            ):
                self._stats.deduplicated += 1
                return
            line = self._builder.mqtt_line(message.topic, message.payload, now)
        except Exception as err:
            self._invalid("MQTT message", err)
            return
        if line is not None:
            self._pipeline.add(line)

    @callback
    def _on_entry_changed(self, change: ConfigEntryChange, entry: ConfigEntry) -> None:
        """Subscribe once MQTT is loaded (also when it is set up after us)."""
        if entry.domain != MQTT_DOMAIN:
            return
        if entry.state is ConfigEntryState.LOADED and not self._mqtt_active:
            self._mqtt_active = True
            self._hass.async_create_task(self._async_subscribe_mqtt(), eager_start=True)
        elif entry.state is not ConfigEntryState.LOADED:
            # MQTT's client went away with its subscriptions.
            self._mqtt_active = False
            self._mqtt_unsubs.clear()

    async def _async_subscribe_mqtt(self) -> None:
        # Imported here, once MQTT is loaded: without MQTT it costs nothing.
        from homeassistant.components import mqtt

        for topic in self._options.mqtt_topics:
            try:
                self._mqtt_unsubs.append(
                    await mqtt.async_subscribe(
                        self._hass, topic, self._on_mqtt_message, encoding=None
                    )
                )
            except Exception as err:
                LOGGER.warning("Cannot subscribe to MQTT topic %s: %s", topic, err)
                return
        LOGGER.debug("Subscribed to MQTT topics %s", self._options.mqtt_topics)

    @callback
    def _async_unsubscribe_mqtt(self) -> None:
        for unsub in self._mqtt_unsubs:
            unsub()
        self._mqtt_unsubs.clear()
        self._mqtt_active = False

"""Capture: listeners on Home Assistant's event bus and MQTT subscriptions.

Every listener is a ``@callback`` that does no I/O: it turns the event into a line
and hands it to the pipeline's queue. Nothing raised here may reach Home
Assistant's bus, so each listener counts and logs (once per kind) what it cannot
handle and goes on. MQTT subscriptions follow MQTT's config entry: made by a task
of ours once it is loaded (retrying refused topics), dropped as it unloads.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN, LOGGER
from .models import IngestorOptions
from .pipeline import Pipeline
from .points import PointBuilder
from .sinks import JsonSinks, MqttMessage
from .stats import IngestorStats

if TYPE_CHECKING:
    from homeassistant.components.mqtt import ReceiveMessage

MQTT_DOMAIN: Final = "mqtt"
# Far more entities than any house has; MQTT topics with ids in them are what
# reaches it, and forgetting one only lets a repeat through.
DEDUP_MAX_KEYS: Final = 20_000
SUBSCRIBE_RETRY_MIN: Final = 1.0
SUBSCRIBE_RETRY_MAX: Final = 300.0


class Deduplicator:
    """Drops a repeat of the same value for the same key within a time window.

    Keys are kept in the order their value was last kept, so forgetting those
    that can no longer suppress anything (and the oldest beyond ``max_keys``) is
    a pop from the front: O(1) amortized per kept value.
    """

    def __init__(self, window: float, max_keys: int = DEDUP_MAX_KEYS) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window and max_keys must be positive")
        self._window = window
        self._max_keys = max_keys
        self._last: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def repeated(self, key: Hashable, value: Any, now: float) -> bool:
        """True when ``value`` equals the last one kept for ``key`` in the window."""
        kept = self._last
        last = kept.get(key)
        if last is not None:
            if now - last[1] < self._window and last[0] == value:
                return True
            kept.move_to_end(key)
        kept[key] = (value, now)
        # The entry just kept is newer than the horizon, so this stops at it.
        horizon = now - self._window
        while len(kept) > self._max_keys or next(iter(kept.values()))[1] <= horizon:
            kept.popitem(last=False)
        return False


class Capture:
    """Subscribes to the configured events and MQTT topics."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        options: IngestorOptions,
        builder: PointBuilder,
        pipeline: Pipeline,
        stats: IngestorStats,
        sinks: JsonSinks,
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._options = options
        self._builder = builder
        self._pipeline = pipeline
        self._stats = stats
        self._sinks = sinks
        self._remember = sinks.recent.append
        # While a JSON sink is active, points go through _add_and_mark, which
        # tells the state callback that the state was recorded (not filtered or
        # a repeat); otherwise the per-event path builds no enriched event.
        self._add_point = pipeline.add_point
        self._marked = False
        self._state_unsub: Callable[[], None] | None = None
        self._listening = False
        self._dedup = (
            Deduplicator(options.dedup_window) if options.dedup_window else None
        )
        self._mqtt_unsubs: dict[str, Callable[[], None]] = {}
        self._mqtt_task: asyncio.Task[None] | None = None
        self._mqtt_refused = False
        self._unsubs: list[Callable[[], None]] = []

    @callback
    def async_start(self) -> None:
        """Start listening."""
        self._listening = True
        self._unsubs = unsubs = [
            self._hass.bus.async_listen(event_type, self._on_event)
            for event_type in self._options.event_types
            if event_type != EVENT_STATE_CHANGED
        ]
        if EVENT_STATE_CHANGED in self._options.event_types:
            self.async_sinks_changed()
            unsubs.append(self._async_stop_states)
        if self._options.mqtt_topics:
            unsubs.append(
                async_dispatcher_connect(
                    self._hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._on_entry_changed
                )
            )
            unsubs.append(self._async_drop_mqtt)
            if self._hass.config_entries.async_loaded_entries(MQTT_DOMAIN):
                self._async_subscribe_mqtt()

    @callback
    def async_stop(self) -> None:
        """Stop listening (idempotent)."""
        self._listening = False
        while self._unsubs:
            self._unsubs.pop()()

    @callback
    def async_sinks_changed(self) -> None:
        """Listen to state changes with the callback that suits the JSON sinks:
        the one that also builds enriched events only while a sink wants them."""
        if not self._listening or EVENT_STATE_CHANGED not in self._options.event_types:
            return
        self._async_stop_states()
        active = self._sinks.active
        self._add_point = self._add_and_mark if active else self._pipeline.add_point
        self._state_unsub = self._hass.bus.async_listen(
            EVENT_STATE_CHANGED,
            self._on_state_changed_to_sinks if active else self._on_state_changed,
        )

    @callback
    def _async_stop_states(self) -> None:
        if self._state_unsub is not None:
            self._state_unsub()
            self._state_unsub = None

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
            self._builder.add_state(state, self._add_point)
            self._remember(state)
        except Exception as err:
            self._invalid("state change", err)

    @callback
    def _add_and_mark(self, series_key: str, shared: str, own: str) -> None:
        self._pipeline.add_point(series_key, shared, own)
        self._marked = True

    @callback
    def _on_state_changed_to_sinks(self, event: Event[Any]) -> None:
        """The state callback, then the JSON sinks for a recorded state."""
        self._marked = False
        self._on_state_changed(event)
        if self._marked:
            try:
                self._sinks.state(event.data["new_state"])
            except Exception as err:
                self._invalid("state change", err)

    @callback
    def _on_event(self, event: Event[Any]) -> None:
        self._stats.events_received += 1
        try:
            line = self._builder.event_line(event)
        except Exception as err:
            self._invalid(f"{event.event_type} event", err)
            return
        if line is None:
            return
        self._pipeline.add(line)
        self._remember(event)
        if self._sinks.active:
            try:
                self._sinks.bus_event(event)
            except Exception as err:
                self._invalid(f"{event.event_type} event", err)

    @callback
    def _on_mqtt_message(self, message: ReceiveMessage) -> None:
        self._stats.events_received += 1
        retained = message.retain
        # The broker replays its stored copy to every new subscription (each HA
        # start, reload or reconnect): by default that is no new reading.
        if retained and not self._options.mqtt_retained:
            self._stats.filtered += 1
            return
        now = time.time()
        try:
            if self._dedup is not None and self._dedup.repeated(
                ("mqtt", message.topic), message.payload, now
            ):
                self._stats.deduplicated += 1
                return
            line, text = self._builder.mqtt_line(
                message.topic, message.payload, now, retained=retained
            )
        except Exception as err:
            self._invalid("MQTT message", err)
            return
        if line is None:
            return
        self._pipeline.add(line)
        try:
            recorded = MqttMessage(message.topic, text, now, retained)
            self._remember(recorded)
            if self._sinks.active:
                self._sinks.mqtt(recorded)
        except Exception as err:
            self._invalid("MQTT message", err)

    @callback
    def _on_entry_changed(self, change: ConfigEntryChange, entry: ConfigEntry) -> None:
        """Subscribe once MQTT is loaded (also when it is set up after us); drop
        our subscriptions as it unloads, before it keeps what is left to restore
        into its next client (which would then hold them twice)."""
        if entry.domain != MQTT_DOMAIN:
            return
        if entry.state is ConfigEntryState.LOADED:
            self._async_subscribe_mqtt()
        elif entry.state is not ConfigEntryState.SETUP_IN_PROGRESS:
            self._async_drop_mqtt()

    @callback
    def _async_subscribe_mqtt(self) -> None:
        """(Re)start the task subscribing to the topics we have not subscribed.

        It starts once MQTT is loaded rather than awaiting
        ``mqtt.async_wait_for_mqtt_client`` before: cancelling a task that awaits
        it cancels the future HA shares between everyone waiting for MQTT.
        """
        if len(self._mqtt_unsubs) == len(self._options.mqtt_topics):
            return
        if self._mqtt_task is not None:
            self._mqtt_task.cancel()
        self._mqtt_task = self._entry.async_create_background_task(
            self._hass,
            self._async_subscribe_topics(),
            f"{DOMAIN} MQTT subscriptions {self._entry.title}",
        )

    async def _async_subscribe_topics(self) -> None:
        # Imported here, once MQTT is loaded: without MQTT it costs nothing.
        from homeassistant.components import mqtt

        delay = SUBSCRIBE_RETRY_MIN
        while True:
            refused: dict[str, Exception] = {}
            for topic in self._options.mqtt_topics:
                if topic in self._mqtt_unsubs:
                    continue
                try:
                    self._mqtt_unsubs[topic] = await mqtt.async_subscribe(
                        self._hass, topic, self._on_mqtt_message, encoding=None
                    )
                except Exception as err:  # retried; logged once below
                    if not isinstance(err, HomeAssistantError):
                        self._stats.internal_errors += 1
                    refused[topic] = err
            if not refused:
                break
            if not self._mqtt_refused:
                self._mqtt_refused = True
                topic, error = next(iter(refused.items()))
                LOGGER.warning(
                    "Cannot subscribe to MQTT topic %s (%s); retrying until it works",
                    topic,
                    error,
                    exc_info=None if isinstance(error, HomeAssistantError) else error,
                )
            await _async_sleep(self._hass, delay)
            delay = min(delay * 2, SUBSCRIBE_RETRY_MAX)
        if self._mqtt_refused:
            self._mqtt_refused = False
            LOGGER.info("Subscribed to every MQTT topic again")
        LOGGER.debug("Subscribed to MQTT topics %s", self._options.mqtt_topics)

    @callback
    def _async_drop_mqtt(self) -> None:
        if self._mqtt_task is not None:
            self._mqtt_task.cancel()
            self._mqtt_task = None
        while self._mqtt_unsubs:
            self._mqtt_unsubs.popitem()[1]()


async def _async_sleep(hass: HomeAssistant, delay: float) -> None:
    """Sleep on HA's clock, which tests move with ``async_fire_time_changed``."""
    wake: asyncio.Future[None] = hass.loop.create_future()

    @callback
    def _wake(_: datetime) -> None:
        wake.set_result(None)

    cancel = async_call_later(hass, delay, _wake)
    try:
        await wake
    finally:
        cancel()

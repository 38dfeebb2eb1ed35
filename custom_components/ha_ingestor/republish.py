"""MQTT republish: each enriched event, live, through Home Assistant's MQTT
integration to ``<prefix>/<domain>/<object_id>/event``.

Best effort by design (the durable copy is InfluxDB's, or the webhook's): the
capture callback only appends to a bounded queue that one supervised task
publishes from. While MQTT is not connected, or when the queue is full because
the broker is slow, messages are dropped and counted, never queued without
bound and never slowing capture.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
import re
from typing import Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .const import DOMAIN, LOGGER
from .models import IngestorOptions

# Enough for a burst of a few seconds in a busy house; beyond it the broker is
# not keeping up and newer messages are dropped.
MAX_QUEUED: Final = 10_000
# Longer than HA's own wait for the broker's acknowledgement (10 s), so HA's
# verdict comes first.
PUBLISH_TIMEOUT: Final = 15.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")


@dataclass(slots=True)
class RepublishStats:
    """What the republisher did since setup."""

    sent: int = 0
    dropped: int = 0
    connected: bool | None = None


def topic_for(prefix: str, entity_id: str | None, event_type: str) -> str:
    """``<prefix>/<domain>/<object_id>/event``; an event without an entity goes to
    ``<prefix>/event/<event_type>/event``."""
    if entity_id and "." in entity_id:
        domain, _, object_id = entity_id.partition(".")
        return f"{prefix}/{domain}/{object_id}/event"
    return f"{prefix}/event/{_UNSAFE.sub('_', event_type) or 'unknown'}/event"


class Republisher:
    """Publishes enriched events to MQTT from a bounded queue."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, options: IngestorOptions
    ) -> None:
        self._hass = hass
        self._entry = entry
        self._prefix = options.republish_prefix
        self._qos = options.republish_qos
        self._retain = options.republish_retain
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._told_down = False
        self._told_error = False
        self.stats = RepublishStats()

    @callback
    def async_start(self) -> None:
        """Start the publishing task."""
        self._task = self._entry.async_create_background_task(
            self._hass, self._async_run(), f"{DOMAIN} MQTT republish"
        )

    async def async_stop(self) -> None:
        """Stop publishing; what is still queued is dropped and counted."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        self._drop_all()

    @callback
    def publish(self, entity_id: str | None, event_type: str, payload: bytes) -> None:
        """Queue one message; never blocks and never raises."""
        if len(self._queue) >= MAX_QUEUED:
            self.stats.dropped += 1
            return
        self._queue.append((topic_for(self._prefix, entity_id, event_type), payload))
        self._wakeup.set()

    def _drop_all(self) -> None:
        self.stats.dropped += len(self._queue)
        self._queue.clear()

    async def _async_run(self) -> None:
        # Imported once the task runs: without republish MQTT costs nothing.
        from homeassistant.components import mqtt

        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if not self.connected():
                    self._drop_all()
                    break
                topic, payload = self._queue.popleft()
                try:
                    async with asyncio.timeout(PUBLISH_TIMEOUT):
                        await mqtt.async_publish(
                            self._hass, topic, payload, self._qos, self._retain
                        )
                except (HomeAssistantError, TimeoutError) as err:
                    self.stats.dropped += 1
                    LOGGER.debug("MQTT republish of %s failed: %r", topic, err)
                    continue
                except Exception as err:  # the task must outlive any MQTT error
                    self.stats.dropped += 1
                    if not self._told_error:
                        self._told_error = True
                        LOGGER.warning(
                            "Unexpected error while republishing to MQTT; further "
                            "ones are counted as dropped",
                            exc_info=err,
                        )
                    continue
                self.stats.sent += 1

    def connected(self) -> bool:
        """Whether MQTT is set up and connected (no I/O); logs once each way."""
        from homeassistant.components import mqtt

        try:
            connected = bool(
                mqtt.mqtt_config_entry_enabled(self._hass)
                and mqtt.is_connected(self._hass)
            )
        except KeyError:  # MQTT's entry exists but is not loaded
            connected = False
        self.stats.connected = connected
        if not connected and not self._told_down:
            self._told_down = True
            LOGGER.warning(
                "MQTT is not connected; republished events are dropped and counted "
                "until it is"
            )
        elif connected and self._told_down:
            self._told_down = False
            LOGGER.info("MQTT is connected again; republishing resumes")
        return connected

"""The live stream: enriched events to WebSocket subscribers, each with its own
filters and its own bounded buffer.

Capture hands each encoded event to ``LiveStream.publish``; matching subscribers
buffer it and a flush soon after sends what they hold as one message. A
subscriber that does not keep up (Home Assistant's queue of messages to its
connection grows) is sent nothing until it catches up; meanwhile its buffer
keeps the newest events and counts what it had to drop, told in its next
message. Capture never waits for a subscriber.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
import fnmatch
import re
from typing import Any, Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

# Events a subscriber's buffer holds between two messages.
MAX_BUFFERED: Final = 1000
# Messages, or bytes, waiting in Home Assistant's queue to a connection beyond
# which the subscriber counts as slow (HA itself closes one at 4,096 messages).
MAX_PENDING: Final = 64
MAX_PENDING_BYTES: Final = 1024 * 1024
SLOW_RETRY: Final = 0.5


@dataclass(slots=True)
class StreamFilter:
    """What a subscriber asked for; an empty criterion matches everything."""

    event_types: frozenset[str] = frozenset()
    entity_globs: re.Pattern[str] | None = None
    areas: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        event_types: Collection[str] = (),
        entity_globs: Collection[str] = (),
        areas: Collection[str] = (),
    ) -> StreamFilter:
        """A filter from the subscription's fields (areas by id or by name)."""
        pattern = (
            re.compile("|".join(fnmatch.translate(glob) for glob in entity_globs))
            if entity_globs
            else None
        )
        return cls(frozenset(event_types), pattern, frozenset(areas))

    def matches(self, event: dict[str, Any], area_id: str | None) -> bool:
        """Whether an enriched event passes (its area's id given beside it)."""
        if self.event_types and event.get("event_type") not in self.event_types:
            return False
        if self.entity_globs is not None and not self.entity_globs.match(
            event.get("entity_id") or ""
        ):
            return False
        return not self.areas or bool({event.get("area"), area_id} & self.areas)


@dataclass(slots=True)
class Subscriber:
    """One WebSocket subscription."""

    send: Callable[[bytes], None]
    message_id: int
    filter: StreamFilter
    # Messages and bytes waiting in HA's queue to this connection (None: unknown).
    pending: Callable[[], tuple[int, int] | None]
    buffer: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_BUFFERED))
    dropped: int = 0
    dropped_total: int = 0
    sent: int = 0


class LiveStream:
    """Subscribers of one entry's enriched events."""

    def __init__(self, hass: HomeAssistant, on_change: Callable[[], None]) -> None:
        self._hass = hass
        # Called when the first subscriber comes or the last one goes: capture
        # builds enriched events only while someone wants them.
        self.on_change = on_change
        self.subscribers: list[Subscriber] = []
        # Drops of subscribers that are gone, for the entry's total.
        self._dropped_before = 0
        self._flush_scheduled = False
        self._retry: CALLBACK_TYPE | None = None

    @callback
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns what removes it."""
        self.subscribers.append(subscriber)
        if len(self.subscribers) == 1:
            self.on_change()

        @callback
        def _remove() -> None:
            if subscriber in self.subscribers:
                self.subscribers.remove(subscriber)
                self._dropped_before += subscriber.dropped_total + subscriber.dropped
                if not self.subscribers:
                    self._cancel_retry()
                    self.on_change()

        return _remove

    @callback
    def publish(self, event: dict[str, Any], data: bytes, area_id: str | None) -> None:
        """Buffer an encoded event for every subscriber it matches."""
        matched = False
        for subscriber in self.subscribers:
            if subscriber.filter.matches(event, area_id):
                buffer = subscriber.buffer
                if len(buffer) == MAX_BUFFERED:
                    subscriber.dropped += 1
                buffer.append(data)
                matched = True
        if matched and not self._flush_scheduled:
            self._flush_scheduled = True
            self._hass.loop.call_soon(self._flush)

    @callback
    def _flush(self, _now: Any = None) -> None:
        self._flush_scheduled = False
        self._cancel_retry()  # this flush is the retry, or comes before it
        slow = False
        for subscriber in self.subscribers:
            if not subscriber.buffer:
                continue
            pending = subscriber.pending()
            if pending is not None and (
                pending[0] > MAX_PENDING or pending[1] > MAX_PENDING_BYTES
            ):
                slow = True
                continue
            events = list(subscriber.buffer)
            subscriber.buffer.clear()
            message = b'{"events":[' + b",".join(events) + b"]"
            if subscriber.dropped:
                message += b',"dropped":%d' % subscriber.dropped
                subscriber.dropped_total += subscriber.dropped
                subscriber.dropped = 0
            subscriber.send(
                b'{"id":%d,"type":"event","event":' % subscriber.message_id
                + message
                + b"}}"
            )
            subscriber.sent += len(events)
        if slow and self._retry is None:
            self._retry = async_call_later(self._hass, SLOW_RETRY, self._flush)

    @callback
    def async_stop(self) -> None:
        """Forget every subscriber (the entry unloads)."""
        self._cancel_retry()
        self.subscribers.clear()

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry()
            self._retry = None

    @property
    def dropped(self) -> int:
        """Events subscribers could not take, since setup."""
        return self._dropped_before + sum(
            s.dropped_total + s.dropped for s in self.subscribers
        )

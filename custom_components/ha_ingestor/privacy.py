"""Privacy: what never leaves Home Assistant, applied before every sink.

One object per entry says which attribute names are never exported (location
coordinates unless the user keeps them, and ``attributes_never_export``), strips
them from nested event data and MQTT JSON, and turns user names into stable keyed
pseudonyms when asked. The key is generated once per entry and kept in its data.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import hmac
import secrets
from typing import Any, Final

from .models import IngestorOptions

# Entry data key of the pseudonym key: never shown (diagnostics redact it).
CONF_PSEUDONYM_KEY: Final = "pseudonym_key"
# Coordinates as Home Assistant's states carry them (device trackers, persons,
# zones, weather stations, phones)...
LOCATION_ATTRIBUTES: Final = frozenset(
    {"latitude", "longitude", "gps_accuracy", "altitude"}
)
# ...and as they appear in service data (device_tracker.see's "gps") and in
# common MQTT payloads (OwnTracks' "lat"/"lon").
LOCATION_KEYS: Final = LOCATION_ATTRIBUTES | {"gps", "lat", "lon", "lng"}
MAX_DEPTH: Final = 32


def new_pseudonym_key() -> str:
    """A fresh random key for an entry's user pseudonyms."""
    return secrets.token_hex(32)


class Privacy:
    """The privacy rules of one entry."""

    def __init__(self, options: IngestorOptions, key: str | None) -> None:
        self.hidden_attributes = frozenset(options.attributes_never_export) | (
            LOCATION_ATTRIBUTES if options.drop_location else frozenset()
        )
        self._hidden_keys = frozenset(options.attributes_never_export) | (
            LOCATION_KEYS if options.drop_location else frozenset()
        )
        self._key = (
            key.encode() if options.pseudonymize_users and key is not None else None
        )

    @property
    def pseudonymizes(self) -> bool:
        """Whether user names are replaced by pseudonyms."""
        return self._key is not None

    def user(self, user_id: str, name: str) -> str:
        """What a sink sees of a user: the name, or a stable keyed pseudonym of
        the user's id (the same across renames and restarts, not reversible
        without the key)."""
        if self._key is None:
            return name
        digest = hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()
        return f"user_{digest[:16]}"

    def scrub(self, value: Any, depth: int = 0) -> Any:
        """``value`` without the hidden keys in any mapping it holds, however deep;
        the same object when there is nothing to remove."""
        if not self._hidden_keys or depth > MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            scrubbed = {
                key: self.scrub(item, depth + 1)
                for key, item in value.items()
                if key not in self._hidden_keys
            }
            if len(scrubbed) == len(value) and all(
                scrubbed[key] is item for key, item in value.items()
            ):
                return value
            return scrubbed
        if isinstance(value, list | tuple):
            items = [self.scrub(item, depth + 1) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items
        return value

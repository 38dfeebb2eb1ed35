"""InfluxDB line protocol, escaped per server kind.

Written by hand rather than with ``influxdb_client.Point``: the pipeline encodes the
``measurement,tags`` part once per entity and reuses it, so per point only the field
set is encoded; ``Point`` rebuilds and re-escapes everything per point and only knows
the 2.x escaping rules.

What each server can store (checked against the real InfluxDB 1.6.7 in the tests):
- Tag keys, tag values, field keys: commas, spaces and ``=`` are escaped with a
  backslash. A newline or carriage return cannot be stored and becomes a space.
- InfluxDB 1.x keeps every other backslash literally (it does not unescape ``\\``)
  and cannot parse a backslash run that ends a value or precedes ``,``, `` `` or
  ``=``; such a run is stored as the fullwidth reverse solidus (U+FF3C).
- InfluxDB 2.x/3 unescape ``\\``, so a backslash is written doubled.
- String field values: ``"`` and ``\\`` are escaped; newlines are kept.
- Numbers are always written as floats, so a field never changes type when a value
  flips between int and float; NaN, ±inf and values beyond a float are left out
  (InfluxDB rejects them).
- A measurement cannot start with ``#`` (a comment line) or be empty: it gets a
  leading ``_``.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
import re
from typing import Final

_KEY_V2: Final = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\ ", "\r": "\\ "}
)
_KEY_V1: Final = str.maketrans(
    {",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\ ", "\r": "\\ "}
)
_MEASUREMENT_V2: Final = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "}
)
_MEASUREMENT_V1: Final = str.maketrans(
    {",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "}
)
# 1.x cannot store a backslash run at the end or before an escaped character.
_V1_BAD_BACKSLASHES: Final = re.compile(r"\\+(?=[ ,=\n\r]|$)")
_V1_BACKSLASH_SUBSTITUTE: Final = "\uff3c"
_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _v1_backslashes(text: str) -> str:
    if "\\" not in text:
        return text
    return _V1_BAD_BACKSLASHES.sub(
        lambda match: _V1_BACKSLASH_SUBSTITUTE * len(match.group()), text
    )


def string_field(value: str) -> str:
    """A quoted string field value."""
    if '"' in value or "\\" in value:
        value = value.translate(_STRING)
    return f'"{value}"'


def float_field(value: float | int) -> str | None:
    """A float field value, or None when InfluxDB cannot store it."""
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number):
        return None
    return repr(number)


class LineEncoder:
    """Encodes points for one server kind: ``"1"``, ``"2"`` or ``"3"``."""

    def __init__(self, api_version: str) -> None:
        self._v1 = api_version == "1"
        self._key_table = _KEY_V1 if self._v1 else _KEY_V2
        self._measurement_table = _MEASUREMENT_V1 if self._v1 else _MEASUREMENT_V2
        self._keys: dict[str, str] = {}

    def key(self, text: str) -> str:
        """An escaped tag key, tag value or field key (cached: keys repeat)."""
        escaped = self._keys.get(text)
        if escaped is None:
            escaped = (_v1_backslashes(text) if self._v1 else text).translate(
                self._key_table
            )
            if len(self._keys) < 10_000:
                self._keys[text] = escaped
        return escaped

    def _tag_value(self, text: str) -> str:
        return (_v1_backslashes(text) if self._v1 else text).translate(self._key_table)

    def measurement(self, name: str) -> str:
        """An escaped measurement name."""
        if not name or name.startswith("#"):
            name = f"_{name}"
        return (_v1_backslashes(name) if self._v1 else name).translate(
            self._measurement_table
        )

    def series_key(self, measurement: str, tags: Mapping[str, str | None]) -> str:
        """``measurement,tag=value,…`` with tags sorted by key; empty tags omitted."""
        parts = [self.measurement(measurement)]
        for key in sorted(tags):
            value = tags[key]
            if value is None or not key:
                continue
            escaped = self._tag_value(value)
            if escaped:
                parts.append(f"{self.key(key)}={escaped}")
        return ",".join(parts)

    def fields(self, fields: Mapping[str, object]) -> str:
        """The field set; "" when no field can be stored (skip the point then)."""
        parts = []
        for name, value in fields.items():
            if not name:
                continue
            if isinstance(value, str):
                encoded: str | None = string_field(value)
            elif isinstance(value, bool):
                encoded = "true" if value else "false"
            elif isinstance(value, (int, float)):
                encoded = float_field(value)
            else:
                continue
            if encoded is not None:
                parts.append(f"{self.key(name)}={encoded}")
        return ",".join(parts)

    @staticmethod
    def line(series_key: str, fields: str, time_ns: int) -> str | None:
        """A whole line, or None when it has no field."""
        if not fields:
            return None
        return f"{series_key} {fields} {time_ns}"

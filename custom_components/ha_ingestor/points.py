"""Turn Home Assistant events and MQTT messages into line-protocol lines.

The schema is a public contract (see the README): one point per state change in a
measurement chosen by the options, ``ha_event`` for other bus events, ``mqtt`` for
MQTT messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
import json
import math
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import Event, State
from homeassistant.helpers.json import json_bytes

from .enrichment import Enricher, EntityInfo
from .line_protocol import LineEncoder
from .models import IngestorOptions
from .privacy import Privacy
from .stats import IngestorStats

if TYPE_CHECKING:
    from .context import ContextEntities

# Attributes that are already tags or fields of every state point.
SKIPPED_ATTRIBUTES: Final = frozenset(
    {"friendly_name", "unit_of_measurement", "device_class", "icon", "entity_picture"}
)
# Field names the schema uses itself; an attribute with such a name gets "_attr".
RESERVED_FIELDS: Final = frozenset(
    {
        "value",
        "state",
        "user",
        "context_id",
        "parent_context_id",
        "automation",
        "friendly_name",
        "hour",
        "weekday",
    }
)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)
MQTT_MEASUREMENT: Final = "mqtt"
EVENT_MEASUREMENT: Final = "ha_event"
MAX_JSON_LEAVES: Final = 200


def nanoseconds(moment: datetime) -> int:
    """Exact Unix time in nanoseconds of an aware datetime (float math is not)."""
    return (moment - EPOCH) // ONE_MICROSECOND * 1000


def timestamp_nanoseconds(timestamp: float) -> int:
    """Unix time in nanoseconds of a float timestamp, rounded to the microsecond
    exactly as ``datetime.fromtimestamp`` rounds it.

    Home Assistant derives a state's ``last_updated`` from its
    ``last_updated_timestamp`` that way, so this equals
    ``nanoseconds(state.last_updated)`` without datetime arithmetic (measured
    here: about a third less per point): the same split into whole and
    fractional seconds, the same multiplication, the same round-half-even.
    """
    whole = int(timestamp)
    return whole * 1_000_000_000 + round((timestamp - whole) * 1e6) * 1000


def number(value: Any) -> float | None:
    """A finite float for numbers and numeric strings, else None (bools are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            result = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def attribute_rules(
    options: IngestorOptions, privacy: Privacy
) -> tuple[frozenset[str], frozenset[str]]:
    """The attribute names to keep (empty: every one not excluded) and to leave
    out, for every sink: what privacy hides is never kept."""
    include = frozenset(options.attributes_include) - privacy.hidden_attributes
    exclude = (
        frozenset(options.attributes_exclude)
        | privacy.hidden_attributes
        | (SKIPPED_ATTRIBUTES - include)
    )
    return include, exclude


class PointBuilder:
    """Builds the lines for one config entry's schema."""

    def __init__(
        self,
        options: IngestorOptions,
        enricher: Enricher,
        encoder: LineEncoder,
        stats: IngestorStats,
        privacy: Privacy,
        context: ContextEntities | None = None,
    ) -> None:
        self._options = options
        self._enricher = enricher
        self._encoder = encoder
        self._stats = stats
        self._privacy = privacy
        self._context = context
        self._attributes_include, self._attributes_exclude = attribute_rules(
            options, privacy
        )
        self._string = encoder.string
        self._contexts = enricher.contexts
        self._time_bucket = -1
        self._time_text = ""

    def add_state(self, state: State, add: Callable[[str, str, str], None]) -> None:
        """Give ``add`` the point for a new state as three pieces whose
        concatenation is its line; nothing when the entity is filtered out.
        (A callback rather than a returned tuple: a tuple per event is one more
        object for the garbage collector to track.)

        This runs for every state change in the house. The first two pieces are
        cached strings shared by the entity's points: its series key, and the
        fields that rarely change (friendly name; encoded attributes, reused
        while HA reuses the attributes object; local-time fields, constant for
        15 minutes). Only the third is built per point: value, state, context
        and timestamp. A point held in memory costs just that third piece.
        """
        entity_id = state.entity_id
        attributes = state.attributes
        info = self._enricher.entity(entity_id, attributes)
        if not info.included:
            self._stats.filtered += 1
            return
        timestamp = state.last_updated_timestamp
        shared = info.shared_fields
        if info.shared_bucket != int(timestamp // 900) or (
            info.shared_attributes is not attributes
        ):
            shared = self._shared_fields(info, attributes, timestamp)
        string = self._string
        text = state.state
        state_text = string(text)
        own = None
        # float() raising costs more than the rest of the point; a state that
        # starts with a letter other than those of "inf"/"nan" is no number.
        if not (text[:1].isalpha() and text[0] not in "iInN"):
            try:
                value = float(text)
            except ValueError:
                pass
            else:
                # Finite numbers only: NaN and inf are stored as state text alone.
                if value - value == 0.0:
                    own = f",value={value!r},state={state_text}"
        if own is None:
            own = f",state={state_text}"
        context = state.context
        context_id = context.id
        # Home Assistant's context ids are ULIDs: nothing to escape or cut.
        if len(context_id) <= 64 and context_id.isalnum():
            own = f'{own},context_id="{context_id}"'
        elif context_id:  # none for states the recorder gives back (backfill)
            own = f"{own},context_id={string(context_id)}"
        if parent_id := context.parent_id:
            own += f",parent_context_id={string(parent_id)}"
        if context.user_id:
            own += f",user={string(self._enricher.user_name(context.user_id) or '')}"
        # The automation or script whose run produced this context, if any.
        if (contexts := self._contexts) and (
            automation := contexts.get(context_id)
            or (contexts.get(parent_id) if parent_id else None)
        ):
            own += f",automation={string(automation)}"
        # Nanoseconds exactly as timestamp_nanoseconds computes them, inlined.
        whole = int(timestamp)
        add(
            info.series_key,
            shared,
            f"{own} {whole * 1_000_000_000 + round((timestamp - whole) * 1e6) * 1000}",
        )

    def _shared_fields(
        self, info: EntityInfo, attributes: Mapping[str, Any], timestamp: float
    ) -> str:
        """The entity's rarely changing fields, cached on its ``EntityInfo``: the
        line's second piece, `` friendly_name=…,hour=…,weekday=…,<attributes>``."""
        bucket = int(timestamp // 900)
        if bucket != self._time_bucket:
            hour, weekday = self._enricher.local_time(timestamp)
            self._time_bucket = bucket
            self._time_text = f",hour={hour},weekday={weekday}"
        encoded = self._encoder.fields(dict(self._attribute_fields(attributes)))
        if encoded:
            encoded = f",{encoded}"
        context = self._context.line_fields if self._context is not None else ""
        fields = f"{info.static_fields}{self._time_text}{context}{encoded}"
        # The time fields are always there, so ``fields`` starts with a comma.
        shared = info.shared_fields = f" {fields[1:]}"
        info.shared_attributes = attributes
        info.shared_bucket = bucket
        return shared

    def _context_fields(self, fields: dict[str, Any], context: Any) -> None:
        if context is None:
            return
        user = self._enricher.user_name(context.user_id)
        if user is not None:
            fields["user"] = user
        fields["context_id"] = context.id
        if context.parent_id:
            fields["parent_context_id"] = context.parent_id
        automation = self._enricher.caused_by(context)
        if automation is not None:
            fields["automation"] = automation

    def _attribute_fields(
        self, attributes: Mapping[str, Any]
    ) -> Iterator[tuple[str, Any]]:
        """Numeric attributes as float fields; allow-listed others as ``<name>_str``.

        A field name always keeps one type, so InfluxDB never rejects a batch for a
        type conflict when an attribute flips between a number and text.
        """
        include = self._attributes_include
        exclude = self._attributes_exclude
        for name, raw in attributes.items():
            if name in exclude or (include and name not in include):
                continue
            key = f"{name}_attr" if name in RESERVED_FIELDS else name
            value = number(raw) if not isinstance(raw, str) else None
            if value is not None:
                yield key, value
            elif name in include and raw is not None:
                yield f"{key}_str", raw if isinstance(raw, str) else _json(raw)

    def event_line(self, event: Event[Any]) -> str | None:
        """An ``ha_event`` point for any bus event but ``state_changed``."""
        data = self._privacy.scrub(dict(event.data))
        entity_id = data.get("entity_id")
        if isinstance(entity_id, (list, tuple)):
            entity_id = ",".join(sorted(str(item) for item in entity_id))
        service_data = data.get("service_data")
        if entity_id is None and isinstance(service_data, Mapping):
            target = service_data.get("entity_id")
            if isinstance(target, (list, tuple)):
                target = ",".join(sorted(str(item) for item in target))
            entity_id = target if isinstance(target, str) else None
        tags = {
            "event_type": str(event.event_type),
            "domain": _text_or_none(data.get("domain")),
            "service": _text_or_none(data.get("service")),
            "entity_id": entity_id if isinstance(entity_id, str) else None,
        }
        fields: dict[str, Any] = {"data": _json(data)}
        self._context_fields(fields, event.context)
        return self._encoder.line(
            self._encoder.series_key(EVENT_MEASUREMENT, tags),
            self._encoder.fields(fields),
            nanoseconds(event.time_fired),
        )

    def mqtt_line(
        self,
        topic: str,
        payload: bytes | bytearray | str,
        timestamp: float,
        retained: bool = False,
    ) -> tuple[str | None, str]:
        """An ``mqtt`` point: the payload text, its number, and a JSON object's
        numeric leaves as dotted float fields; tagged ``retained=true`` when it is
        the broker's stored copy. Returned with the payload text as recorded
        (privacy applied, truncated), which the JSON sinks reuse."""
        text = _decode(payload)
        fields: dict[str, Any] = {}
        value = number(text)
        if value is not None:
            fields["value"] = value
        elif text[:1] in ("{", "["):
            text, decoded = self.scrub_json(text)
            for key, leaf in _numeric_leaves(decoded, ""):
                fields[key] = leaf
        if len(text) > self._options.mqtt_max_payload:
            text = text[: self._options.mqtt_max_payload]
            self._stats.mqtt_payloads_truncated += 1
        fields["payload"] = text
        line = self._encoder.line(
            self._encoder.series_key(
                MQTT_MEASUREMENT,
                {"topic": topic, "retained": "true" if retained else None},
            ),
            self._encoder.fields(fields),
            round(timestamp * 1_000_000) * 1000,
        )
        return line, text

    def scrub_json(self, text: str) -> tuple[str, Any]:
        """A JSON payload's text and decoded value without what privacy hides
        (the text as it came when nothing is hidden or it is no JSON)."""
        try:
            decoded = json.loads(text)
        except ValueError:
            return text, None
        scrubbed = self._privacy.scrub(decoded)
        if scrubbed is not decoded:
            text = _json(scrubbed)
        return text, scrubbed


def _decode(payload: bytes | bytearray | str) -> str:
    raw = (
        payload.encode("utf-8", "surrogateescape")
        if isinstance(payload, str)
        else bytes(payload)
    )
    return raw.decode("utf-8", "replace")


def _numeric_leaves(value: Any, prefix: str) -> Iterator[tuple[str, float]]:
    """Numeric leaves of decoded JSON as (dotted.name, float), bounded in count."""
    stack: list[tuple[str, Any]] = [(prefix, value)]
    emitted = 0
    while stack and emitted < MAX_JSON_LEAVES:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(
                (f"{path}.{key}" if path else str(key), child)
                for key, child in reversed(node.items())
            )
        elif isinstance(node, list):
            stack.extend(
                (f"{path}.{index}" if path else str(index), child)
                for index, child in reversed(list(enumerate(node)))
            )
        elif path and (leaf := number(node)) is not None and not isinstance(node, str):
            emitted += 1
            yield (
                (
                    "value_" + path
                    if path in RESERVED_FIELDS or path == "payload"
                    else path
                ),
                leaf,
            )


def _json(value: Any) -> str:
    """Compact JSON with HA's encoder; anything it cannot encode becomes its repr."""
    try:
        return json_bytes(value).decode("utf-8", "replace")
    except (TypeError, ValueError):
        return json.dumps(value, default=repr, ensure_ascii=False)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

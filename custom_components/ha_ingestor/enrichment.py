"""Enrichment: what Home Assistant's registries know about an entity, a user and a
context, computed once and cached until a registry changes.

Per state change the pipeline needs the measurement and the encoded
``measurement,tag=…`` series key. Both depend only on the registries and on three
slowly changing state attributes, so they are built once per entity and reused;
any registry update clears the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_FRIENDLY_NAME,
    ATTR_UNIT_OF_MEASUREMENT,
)
from homeassistant.core import Context, Event, HomeAssistant, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
    label_registry as lr,
)
from homeassistant.util import dt as dt_util

from .filters import EntityFilter
from .line_protocol import LineEncoder
from .models import IngestorOptions, MeasurementStrategy
from .privacy import Privacy

REGISTRY_EVENTS: Final = (
    er.EVENT_ENTITY_REGISTRY_UPDATED,
    dr.EVENT_DEVICE_REGISTRY_UPDATED,
    ar.EVENT_AREA_REGISTRY_UPDATED,
    fr.EVENT_FLOOR_REGISTRY_UPDATED,
    lr.EVENT_LABEL_REGISTRY_UPDATED,
)
USER_EVENTS: Final = ("user_added", "user_updated", "user_removed")
CONTEXT_EVENTS: Final = ("automation_triggered", "script_started")
MAX_CONTEXTS: Final = 4096


@dataclass(slots=True)
class EntityInfo:
    """An entity's cached enrichment."""

    included: bool
    series_key: str
    # Encoded fields every point of the entity carries (",friendly_name=…").
    static_fields: str
    # The state attributes the series key was built from; a change rebuilds it.
    built_from: tuple[Any, Any, Any]
    # The attributes object last seen: HA reuses it while attributes do not change,
    # so an identity check skips even the comparison above.
    attributes: Mapping[str, Any] | None = None
    # The points' rarely changing fields (see PointBuilder.state_line), encoded
    # from these attributes within this 15-minute bucket of UTC time.
    shared_fields: str = ""
    shared_attributes: Mapping[str, Any] | None = None
    shared_bucket: int = -1
    # The registry context as the JSON form of an event names it.
    tags: Mapping[str, str | None] | None = None
    # For live-stream filters by area id (the tags hold its name).
    area_id: str | None = None


def _attribute_key(attributes: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (
        attributes.get(ATTR_UNIT_OF_MEASUREMENT),
        attributes.get(ATTR_DEVICE_CLASS),
        attributes.get(ATTR_FRIENDLY_NAME),
    )


class Enricher:
    """Registry lookups for the pipeline, cached per entity."""

    def __init__(
        self,
        hass: HomeAssistant,
        options: IngestorOptions,
        encoder: LineEncoder,
        entity_filter: EntityFilter,
        privacy: Privacy,
    ) -> None:
        self._hass = hass
        self._privacy = privacy
        self._options = options
        self._overrides = options.overrides
        self._encoder = encoder
        self._filter = entity_filter
        self._entities: dict[str, EntityInfo] = {}
        self._users: dict[str, str] = {}
        self._contexts: OrderedDict[str, str] = OrderedDict()
        self._time_bucket = -1
        self._time_fields: tuple[int, int] = (0, 0)

    async def async_start(self) -> list[Callable[[], None]]:
        """Load users and listen for what invalidates the caches."""
        await self._async_load_users()
        unsubs = [
            self._hass.bus.async_listen(event_type, self._on_registry_updated)
            for event_type in REGISTRY_EVENTS
        ]
        unsubs += [
            self._hass.bus.async_listen(event_type, self._on_user_changed)
            for event_type in USER_EVENTS
        ]
        unsubs += [
            self._hass.bus.async_listen(event_type, self._on_run_started)
            for event_type in CONTEXT_EVENTS
        ]
        return unsubs

    async def _async_load_users(self) -> None:
        self._users = {
            user.id: self._privacy.user(user.id, user.name or user.id)
            for user in await self._hass.auth.async_get_users()
        }

    @callback
    def _on_registry_updated(self, event: Event[Any]) -> None:
        self._entities.clear()

    @callback
    def async_context_changed(self) -> None:
        """A context entity changed: every entity's shared fields, which carry
        it, are built afresh at its next point."""
        for info in self._entities.values():
            info.shared_bucket = -1

    async def _on_user_changed(self, event: Event[Any]) -> None:
        await self._async_load_users()

    @callback
    def _on_run_started(self, event: Event[Any]) -> None:
        """Remember which automation or script started a context."""
        entity_id = event.data.get("entity_id")
        if isinstance(entity_id, str):
            self._contexts[event.context.id] = entity_id
            if len(self._contexts) > MAX_CONTEXTS:
                self._contexts.popitem(last=False)

    def user_name(self, user_id: str | None) -> str | None:
        """The name (or pseudonym) of the user who caused something; an unknown
        user's id."""
        if user_id is None:
            return None
        name = self._users.get(user_id)
        return self._privacy.user(user_id, user_id) if name is None else name

    @property
    def contexts(self) -> Mapping[str, str]:
        """Context id -> the automation or script whose run produced it (the
        per-event path reads it directly; see ``caused_by``)."""
        return self._contexts

    def caused_by(self, context: Context) -> str | None:
        """The automation or script whose run produced this context, when known."""
        return self._contexts.get(context.id) or (
            self._contexts.get(context.parent_id) if context.parent_id else None
        )

    def local_time(self, timestamp: float) -> tuple[int, int]:
        """(hour, weekday Monday=0) in Home Assistant's time zone.

        Every UTC offset is a multiple of 15 minutes, so the answer is constant
        within a 15-minute bucket of UTC time and computed once per bucket.
        """
        bucket = int(timestamp // 900)
        if bucket != self._time_bucket:
            local = dt_util.as_local(dt_util.utc_from_timestamp(bucket * 900))
            self._time_bucket = bucket
            self._time_fields = (local.hour, local.weekday())
        return self._time_fields

    def entity(self, entity_id: str, attributes: Mapping[str, Any]) -> EntityInfo:
        """The cached enrichment of an entity, rebuilt when it went stale."""
        info = self._entities.get(entity_id)
        if info is not None and info.attributes is attributes:
            return info
        if info is None or info.built_from != _attribute_key(attributes):
            info = self._entities[entity_id] = self._build(entity_id, attributes)
        info.attributes = attributes
        return info

    def _build(self, entity_id: str, attributes: Mapping[str, Any]) -> EntityInfo:
        hass = self._hass
        domain = entity_id.partition(".")[0]
        entry = er.async_get(hass).async_get(entity_id)
        device = (
            dr.async_get(hass).async_get(entry.device_id)
            if entry is not None and entry.device_id
            else None
        )
        area_id = (entry.area_id if entry else None) or (
            device.area_id if device else None
        )
        area = ar.async_get(hass).async_get_area(area_id) if area_id else None
        floor = (
            fr.async_get(hass).async_get_floor(area.floor_id)
            if area is not None and area.floor_id
            else None
        )
        label_ids = set(entry.labels if entry else ()) | set(
            device.labels if device else ()
        )
        labels = lr.async_get(hass)
        label_names = sorted(
            label.name
            for label_id in label_ids
            if (label := labels.async_get_label(label_id)) is not None
        )
        parent, manufacturer, model = _device_lineage(hass, device)
        unit = attributes.get(ATTR_UNIT_OF_MEASUREMENT) or (
            entry.unit_of_measurement if entry else None
        )
        device_class = attributes.get(ATTR_DEVICE_CLASS) or (
            (entry.device_class or entry.original_device_class) if entry else None
        )
        friendly_name = attributes.get(ATTR_FRIENDLY_NAME)
        tags: dict[str, str | None] = {
            "entity_id": entity_id,
            "domain": domain,
            "device_class": _text(device_class),
            "unit": _text(unit),
            "area": area.name if area else None,
            "floor": floor.name if floor else None,
            "device": (device.name_by_user or device.name) if device else None,
            "device_id": device.id if device else None,
            "manufacturer": manufacturer,
            "model": model,
            "integration": entry.platform if entry else None,
            "entity_category": (
                entry.entity_category.value if entry and entry.entity_category else None
            ),
            "parent_device": (parent.name_by_user or parent.name) if parent else None,
            "parent_device_id": parent.id if parent else None,
            "labels": ",".join(label_names) or None,
        }
        included = self._filter(
            entity_id,
            area_id=area_id,
            label_ids=label_ids,
            device_id=device.id if device else None,
        )
        measurement = self._measurement(entity_id, domain, unit, device_class)
        name = _text(friendly_name)
        return EntityInfo(
            included=included,
            series_key=self._encoder.series_key(measurement, tags),
            static_fields=f",friendly_name={self._encoder.string(name)}"
            if name
            else "",
            built_from=_attribute_key(attributes),
            tags=tags,
            area_id=area_id,
        )

    def _measurement(
        self, entity_id: str, domain: str, unit: Any, device_class: Any
    ) -> str:
        override = self._overrides.get(entity_id) or self._overrides.get(domain)
        if override:
            return override
        strategy = self._options.measurement
        if strategy is MeasurementStrategy.UNIT_OF_MEASUREMENT:
            return _text(unit) or domain
        if strategy is MeasurementStrategy.DOMAIN_DEVICE_CLASS:
            return f"{domain}__{device_class}" if _text(device_class) else domain
        if strategy is MeasurementStrategy.ENTITY_ID:
            return entity_id
        if strategy is MeasurementStrategy.FIXED:
            return self._options.measurement_name
        return domain


def _device_lineage(
    hass: HomeAssistant, device: Any
) -> tuple[Any, str | None, str | None]:
    """(parent device, manufacturer, model) of a device.

    A device's parent is its ``via_device``. Home Assistant 2026.x also has child
    devices (``parent_device_id``), which carry no manufacturer or model of their
    own: those come from the parent.
    """
    if device is None:
        return None, None, None
    devices = dr.async_get(hass)
    if isinstance(device, dr.DeviceEntry):
        parent = (
            devices.async_get(device.via_device_id) if device.via_device_id else None
        )
        return parent, device.manufacturer, device.model
    parent = devices.async_get(device.parent_device_id)
    if isinstance(parent, dr.DeviceEntry):
        return parent, parent.manufacturer, parent.model
    return parent, None, None


def _text(value: Any) -> str | None:
    """A registry or attribute value as tag text; None when absent or empty."""
    if value is None:
        return None
    text = str(value)
    return text or None

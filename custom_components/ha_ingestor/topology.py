"""The home's relationships as data: the graph the WebSocket API answers with,
and the ``ha_topology`` measurement Grafana can join on.

Floors, areas and devices come from Home Assistant's registries; which entities
an automation or script references, from their own helpers (only where those
integrations are loaded). The measurement is written at setup and again, once
things settle, after a registry changes or automations or scripts reload: one
point per recorded entity, with the same tags as its state points.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping
import time
from typing import Any, Final

from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
from homeassistant.helpers.debounce import Debouncer

from .const import LOGGER
from .enrichment import REGISTRY_EVENTS, Enricher
from .line_protocol import LineEncoder

TOPOLOGY_MEASUREMENT: Final = "ha_topology"
RELOAD_EVENTS: Final = ("automation_reloaded", "script_reloaded")
# Registry changes come in bursts (a device with its entities): write once after.
COOLDOWN: Final = 10.0
TOPOLOGY_TAGS: Final = ("device", "parent_device", "area", "floor", "integration")


def _references(hass: HomeAssistant, domain: str) -> dict[str, dict[str, list[str]]]:
    """For each automation (or script): the entities and devices it references."""
    if domain not in hass.config.components:
        return {}
    if domain == "automation":
        from homeassistant.components import automation as module
    else:
        from homeassistant.components import script as module  # type: ignore[no-redef]
    entities_in = getattr(module, f"entities_in_{domain}")
    devices_in = getattr(module, f"devices_in_{domain}")
    return {
        entity_id: {
            "entities": sorted(entities_in(hass, entity_id)),
            "devices": sorted(devices_in(hass, entity_id)),
        }
        for entity_id in sorted(hass.states.async_entity_ids(domain))
    }


def _devices(hass: HomeAssistant) -> Iterable[dr.DeviceEntry]:
    """Every device (a mapping by id before Home Assistant 2026, a collection
    since)."""
    devices: Any = dr.async_get(hass).devices
    return devices.values() if isinstance(devices, Mapping) else devices


def relationships(hass: HomeAssistant) -> dict[str, Any]:
    """The graph: floors, areas, devices (parents and entities), and the
    references of automations and scripts."""
    entities_by_device: defaultdict[str, list[str]] = defaultdict(list)
    for entity in er.async_get(hass).entities.values():
        if entity.device_id:
            entities_by_device[entity.device_id].append(entity.entity_id)
    return {
        "floors": [
            {"floor_id": floor.floor_id, "name": floor.name, "level": floor.level}
            for floor in sorted(
                fr.async_get(hass).async_list_floors(), key=lambda f: f.floor_id
            )
        ],
        "areas": [
            {"area_id": area.id, "name": area.name, "floor_id": area.floor_id}
            for area in sorted(
                ar.async_get(hass).async_list_areas(), key=lambda a: a.id
            )
        ],
        "devices": [
            {
                "device_id": device.id,
                "name": device.name_by_user or device.name,
                "manufacturer": device.manufacturer,
                "model": device.model,
                "area_id": device.area_id,
                "via_device_id": device.via_device_id,
                "entities": sorted(entities_by_device.get(device.id, ())),
            }
            for device in sorted(
                _devices(hass), key=lambda d: (d.name_by_user or d.name or "", d.id)
            )
        ],
        "automations": _references(hass, "automation"),
        "scripts": _references(hass, "script"),
    }


class TopologyWriter:
    """Writes ``ha_topology`` points through an entry's pipeline."""

    def __init__(
        self,
        hass: HomeAssistant,
        enricher: Enricher,
        encoder: LineEncoder,
        add: Callable[[str], None],
    ) -> None:
        self._hass = hass
        self._enricher = enricher
        self._encoder = encoder
        self._add = add
        self._debouncer: Debouncer[Coroutine[Any, Any, None]] = Debouncer(
            hass,
            LOGGER,
            cooldown=COOLDOWN,
            immediate=False,
            function=self._async_write,
        )

    @callback
    def async_start(self) -> Callable[[], None]:
        """Write now, and again after what changes the graph."""
        self.write()
        unsubs = [
            self._hass.bus.async_listen(event_type, self._on_change)
            for event_type in (*REGISTRY_EVENTS, *RELOAD_EVENTS)
        ]

        @callback
        def _stop() -> None:
            for unsub in unsubs:
                unsub()
            self._debouncer.async_cancel()

        return _stop

    @callback
    def _on_change(self, event: Event[Any]) -> None:
        self._debouncer.async_schedule_call()

    async def _async_write(self) -> None:
        self.write()

    @callback
    def write(self) -> None:
        """One point per recorded entity, now."""
        hass = self._hass
        referenced: defaultdict[str, dict[str, list[str]]] = defaultdict(
            lambda: {"automation": [], "script": []}
        )
        for domain in ("automation", "script"):
            for runner, refs in _references(hass, domain).items():
                for entity_id in refs["entities"]:
                    referenced[entity_id][domain].append(runner)
        entity_ids = set(er.async_get(hass).entities) | set(
            hass.states.async_entity_ids()
        )
        time_ns = time.time_ns()
        encoder = self._encoder
        for entity_id in sorted(entity_ids):
            state = hass.states.get(entity_id)
            info = self._enricher.entity(entity_id, state.attributes if state else {})
            if not info.included:
                continue
            tags = info.tags or {}
            refs = referenced.get(entity_id, {"automation": [], "script": []})
            line = encoder.line(
                encoder.series_key(
                    TOPOLOGY_MEASUREMENT,
                    {"entity_id": entity_id}
                    | {key: tags.get(key) for key in TOPOLOGY_TAGS},
                ),
                encoder.fields(
                    {
                        "automations": ",".join(refs["automation"]),
                        "scripts": ",".join(refs["script"]),
                    }
                ),
                time_ns,
            )
            if line is not None:
                self._add(line)

"""Which entities are recorded: include/exclude by domain, entity, glob, area, label
and device, where an exclude always wins.

Home Assistant's ``entityfilter`` knows domains, entities and globs only; areas,
labels and devices come from the registries, so the whole decision is made here,
once per entity (the result is cached with the entity's enrichment).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
import fnmatch
import re

from .models import IngestorOptions


@dataclass(frozen=True, slots=True)
class _Rules:
    domains: frozenset[str]
    entities: frozenset[str]
    globs: re.Pattern[str] | None
    areas: frozenset[str]
    labels: frozenset[str]
    devices: frozenset[str]

    @classmethod
    def build(
        cls,
        domains: Collection[str],
        entities: Collection[str],
        globs: Collection[str],
        areas: Collection[str],
        labels: Collection[str],
        devices: Collection[str],
    ) -> _Rules:
        pattern = (
            re.compile("|".join(fnmatch.translate(glob) for glob in globs))
            if globs
            else None
        )
        return cls(
            frozenset(domains),
            frozenset(entities),
            pattern,
            frozenset(areas),
            frozenset(labels),
            frozenset(devices),
        )

    @property
    def empty(self) -> bool:
        return not (
            self.domains
            or self.entities
            or self.globs
            or self.areas
            or self.labels
            or self.devices
        )

    def match(
        self,
        entity_id: str,
        domain: str,
        area_id: str | None,
        label_ids: Collection[str],
        device_id: str | None,
    ) -> bool:
        return (
            domain in self.domains
            or entity_id in self.entities
            or (self.globs is not None and self.globs.match(entity_id) is not None)
            or (area_id is not None and area_id in self.areas)
            or not self.labels.isdisjoint(label_ids)
            or (device_id is not None and device_id in self.devices)
        )


class EntityFilter:
    """Decides whether an entity's state changes are recorded."""

    def __init__(self, options: IngestorOptions) -> None:
        self._include = _Rules.build(
            options.include_domains,
            options.include_entities,
            options.include_entity_globs,
            options.include_areas,
            options.include_labels,
            options.include_devices,
        )
        self._exclude = _Rules.build(
            options.exclude_domains,
            options.exclude_entities,
            options.exclude_entity_globs,
            options.exclude_areas,
            options.exclude_labels,
            options.exclude_devices,
        )

    def __call__(
        self,
        entity_id: str,
        *,
        area_id: str | None = None,
        label_ids: Collection[str] = (),
        device_id: str | None = None,
    ) -> bool:
        """Return True when the entity is recorded.

        An exclude match wins; with no include rule everything else is recorded,
        otherwise only what an include rule matches.
        """
        domain = entity_id.partition(".")[0]
        if self._exclude.match(entity_id, domain, area_id, label_ids, device_id):
            return False
        return self._include.empty or self._include.match(
            entity_id, domain, area_id, label_ids, device_id
        )

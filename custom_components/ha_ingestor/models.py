"""Pydantic models for what crosses the integration's boundaries.

Options are validated here once per (re)load. The per-event path builds no model:
Home Assistant has already validated its ``State``, ``Event`` and MQTT message
objects, and ``points.py`` reads them directly; untrusted MQTT payloads are parsed
there defensively (counted and skipped when they make no sense).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .const import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EVENT_TYPES,
    DEFAULT_FLUSH_INTERVAL,
    LOGGER,
)


class MeasurementStrategy(StrEnum):
    """How a state change's measurement name is chosen.

    The values are translation keys too, which may not hold "__": entries stored
    as "domain__device_class" are migrated (``async_migrate_entry``); the
    measurement it names stays ``<domain>__<device_class>``.
    """

    DOMAIN = "domain"
    UNIT_OF_MEASUREMENT = "unit_of_measurement"
    DOMAIN_DEVICE_CLASS = "domain_device_class"
    ENTITY_ID = "entity_id"
    FIXED = "fixed"


def _clean(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


class IngestorOptions(BaseModel):
    """The pipeline's options, as stored in the config entry's ``options``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_types: tuple[str, ...] = Field(default=DEFAULT_EVENT_TYPES)
    mqtt_topics: tuple[str, ...] = ()
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=100_000)
    flush_interval: float = Field(default=DEFAULT_FLUSH_INTERVAL, gt=0, le=3600)

    measurement: MeasurementStrategy = MeasurementStrategy.DOMAIN
    measurement_name: str = Field(default="home_assistant", min_length=1)
    # "sensor.x=name" or "sensor=name" lines: per-entity beats per-domain.
    measurement_overrides: tuple[str, ...] = ()

    include_domains: tuple[str, ...] = ()
    include_entities: tuple[str, ...] = ()
    include_entity_globs: tuple[str, ...] = ()
    include_areas: tuple[str, ...] = ()
    include_labels: tuple[str, ...] = ()
    include_devices: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()
    exclude_entities: tuple[str, ...] = ()
    exclude_entity_globs: tuple[str, ...] = ()
    exclude_areas: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    exclude_devices: tuple[str, ...] = ()

    # Attributes: empty include = every numeric attribute; names listed here are
    # also kept when they are strings (as ``<name>_str``).
    attributes_include: tuple[str, ...] = ()
    attributes_exclude: tuple[str, ...] = ()

    dedup_window: float = Field(default=0.0, ge=0, le=86_400)
    # Minutes without a successful write before the outage repair shows.
    outage_alert_minutes: float = Field(default=15, ge=1, le=10_080)
    max_spool_mb: float = Field(default=512, ge=0.01, le=100_000)
    max_memory_points: int = Field(default=100_000, ge=100, le=10_000_000)
    mqtt_max_payload: int = Field(default=4096, ge=16, le=1_048_576)
    # A retained message is replayed to every new subscription (each start or
    # reload): off, it is skipped; on, recorded with the tag ``retained=true``.
    mqtt_retained: bool = False
    # gzip large write bodies: saves bandwidth to a remote server, costs CPU.
    compress: bool = False

    # Context attached to every state-change point (``ctx_*`` fields): these
    # entities' states, and these of their numeric attributes where they have them.
    context_entities: tuple[str, ...] = Field(default=(), max_length=10)
    context_attributes: tuple[str, ...] = ()

    # Sinks beside InfluxDB, fed the enriched event as JSON.
    republish: bool = False
    republish_prefix: str = Field(default="ha_ingestor", min_length=1)
    republish_qos: int = Field(default=0, ge=0, le=1)
    republish_retain: bool = False
    webhook_url: str | None = None
    webhook_secret: str | None = None

    # Privacy, applied before every sink (README: "What leaves Home Assistant").
    drop_location: bool = True
    pseudonymize_users: bool = False
    attributes_never_export: tuple[str, ...] = ()

    @field_validator(
        "event_types",
        "mqtt_topics",
        "measurement_overrides",
        "include_domains",
        "include_entities",
        "include_entity_globs",
        "include_areas",
        "include_labels",
        "include_devices",
        "exclude_domains",
        "exclude_entities",
        "exclude_entity_globs",
        "exclude_areas",
        "exclude_labels",
        "exclude_devices",
        "attributes_include",
        "attributes_exclude",
        "context_entities",
        "context_attributes",
        "attributes_never_export",
        mode="after",
    )
    @classmethod
    def _strip_and_dedupe(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _clean(values)

    @field_validator("measurement_name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("republish_prefix", mode="after")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not value or any(char in value for char in "+#\0"):
            raise ValueError("an MQTT topic prefix without wildcards")
        return value

    @field_validator("webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        return value or None

    @field_validator("webhook_url", mode="after")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must start with http:// or https://")
        return value

    @property
    def webhook(self) -> bool:
        """Whether the webhook sink is on: it needs a URL and a secret to sign."""
        return bool(self.webhook_url and self.webhook_secret)

    @property
    def json_sinks(self) -> bool:
        """Whether any sink needs the enriched event as JSON."""
        return self.republish or self.webhook

    @field_validator("measurement_overrides", mode="after")
    @classmethod
    def _overrides_are_pairs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            key, sep, name = value.partition("=")
            if not sep or not key.strip() or not name.strip():
                raise ValueError(f"expected 'entity_or_domain=measurement': {value!r}")
        return values

    @model_validator(mode="after")
    def _captures_something(self) -> IngestorOptions:
        if not self.event_types and not self.mqtt_topics:
            raise ValueError("select at least one event type or MQTT topic")
        return self

    @property
    def overrides(self) -> dict[str, str]:
        """Measurement overrides as entity-id-or-domain → measurement."""
        pairs = (value.partition("=") for value in self.measurement_overrides)
        return {key.strip(): name.strip() for key, _, name in pairs}

    @classmethod
    def from_entry_options(cls, options: Mapping[str, Any]) -> IngestorOptions:
        """Read stored options; a missing or invalid key takes its default (logged),
        so options from an older release or edited by hand never stop setup."""
        data = dict(options)
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            bad = {str(error["loc"][0]) for error in err.errors() if error["loc"]}
            LOGGER.warning("Ignoring invalid options %s: %s", sorted(bad) or "all", err)
            if not bad:  # the options as a whole make no sense: use the defaults
                return cls()
            return cls.model_validate({k: v for k, v in data.items() if k not in bad})

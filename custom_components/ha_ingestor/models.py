"""Pydantic models for what crosses the integration's boundaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .const import DEFAULT_BATCH_SIZE, DEFAULT_EVENT_TYPES, DEFAULT_FLUSH_INTERVAL


class IngestorOptions(BaseModel):
    """The pipeline's options, as stored in the config entry's ``options``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_types: tuple[str, ...] = Field(default=DEFAULT_EVENT_TYPES)
    mqtt_topics: tuple[str, ...] = ()
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, le=100_000)
    flush_interval: float = Field(default=DEFAULT_FLUSH_INTERVAL, gt=0, le=3600)

    @field_validator("event_types", "mqtt_topics", mode="after")
    @classmethod
    def _strip_and_dedupe(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))

    @model_validator(mode="after")
    def _captures_something(self) -> IngestorOptions:
        if not self.event_types and not self.mqtt_topics:
            raise ValueError("select at least one event type or MQTT topic")
        return self

    @classmethod
    def from_entry_options(cls, options: Mapping[str, Any]) -> IngestorOptions:
        """Read stored options, falling back to the defaults for missing keys."""
        return cls.model_validate(dict(options))

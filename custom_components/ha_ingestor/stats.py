"""Counters the pipeline keeps about itself (shown in diagnostics and sensors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
import logging
from typing import Any

from .const import LOGGER


@dataclass(slots=True)
class IngestorStats:
    """What happened to every event the pipeline has seen since setup."""

    events_received: int = 0
    points_queued: int = 0
    points_written: int = 0
    batches_written: int = 0
    write_errors: int = 0
    filtered: int = 0
    deduplicated: int = 0
    invalid: int = 0
    rejected_points: int = 0
    dropped_points: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    last_drop_reason: str | None = None
    points_spooled: int = 0
    points_replayed: int = 0
    mqtt_payloads_truncated: int = 0
    spool_errors: int = 0
    internal_errors: int = 0
    last_write: datetime | None = None
    last_error: str | None = None
    _logged: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Counters for diagnostics."""
        data = asdict(self)
        del data["_logged"]
        return data

    def log_once(
        self,
        kind: str,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        """Log a problem the first time it happens; count it every time elsewhere."""
        if kind in self._logged:
            return
        self._logged.add(kind)
        LOGGER.log(logging.WARNING, message, *args, exc_info=exc_info)

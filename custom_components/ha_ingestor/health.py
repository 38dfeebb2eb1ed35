"""Delivery health: what failed and what was lost is counted, logged once, and
told to the user as repairs that clear themselves once the condition ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from . import issues
from .const import LOGGER
from .spool import SpoolError
from .stats import IngestorStats

# A drop repair clears itself after this long without a drop.
QUIET_PERIOD: Final = timedelta(hours=1)
OUTAGE_REFRESH: Final = timedelta(minutes=1)
# A spool that failed is tried again for overflow after this many seconds.
SPOOL_RETRY: Final = 5.0

# Why points were dropped (keys of IngestorStats.dropped_by_reason).
DROP_SPOOL_FULL: Final = "spool_full"
DROP_MEMORY_FULL: Final = "memory_full"
DROP_DAMAGED: Final = "damaged_spool_batch"
DROP_REJECTED: Final = "rejected_not_stored"
DROP_SHUTDOWN: Final = "shutdown_timeout"


@dataclass(kw_only=True)
class PipelineHooks:
    """What the pipeline tells Home Assistant about (repairs, reauth)."""

    raise_issue: Callable[[str, Mapping[str, str]], object] = lambda kind, p: None
    clear_issue: Callable[[str], object] = lambda kind: None
    reauth: Callable[[], object] = lambda: None
    # Something the health entities show changed (connected, a drop).
    changed: Callable[[], object] = lambda: None


class DeliveryHealth:
    """Counts, logs and repairs for one entry's pipeline."""

    def __init__(
        self,
        hass: HomeAssistant,
        stats: IngestorStats,
        hooks: PipelineHooks,
        spool_path: Path,
        sink: str = "InfluxDB",
    ) -> None:
        self._hass = hass
        self._sink = sink
        self._stats = stats
        self.hooks = hooks
        self._spool_path = spool_path
        self.spool_error: str | None = None
        self._spool_retry_at = 0.0
        self._last_drop: datetime | None = None
        self._raised: set[str] = set()
        self._failing_since: datetime | None = None
        self._outage_told: datetime | None = None

    @property
    def spool_retry_due(self) -> bool:
        """Whether the spool may be tried (again) for overflow."""
        return self.spool_error is None or (
            self._hass.loop.time() >= self._spool_retry_at
        )

    def spool_failed(self, err: SpoolError) -> None:
        """The spool refused a read or write: memory keeps the points."""
        self._stats.spool_errors += 1
        if self.spool_error is None:
            LOGGER.warning(
                "Cannot write the spool (%s); points stay in memory and still go "
                "to %s when it answers",
                err,
                self._sink,
            )
        self.spool_error = str(err)
        self._spool_retry_at = self._hass.loop.time() + SPOOL_RETRY
        self.raise_issue(
            issues.SPOOL_UNAVAILABLE, path=str(self._spool_path), error=str(err)
        )

    def spool_ok(self) -> None:
        """The spool took a write or a read."""
        if self.spool_error is not None:
            LOGGER.info("The spool works again")
            self.spool_error = None
            self.clear(issues.SPOOL_UNAVAILABLE)

    def dropped(self, count: int, reason: str) -> None:
        """Count points that had to go, log once per reason, raise a repair."""
        stats = self._stats
        by_reason = stats.dropped_by_reason
        stats.dropped_points += count
        by_reason[reason] = by_reason.get(reason, 0) + count
        stats.last_drop_reason = reason
        self._last_drop = dt_util.utcnow()
        self.hooks.changed()
        stats.log_once(
            f"dropped_{reason}",
            "Dropped %s points (%s); further drops are counted in diagnostics",
            count,
            reason,
        )
        if reason == DROP_SPOOL_FULL:
            self.raise_issue(issues.SPOOL_FULL, dropped=str(by_reason[reason]))
            return
        others = {name: n for name, n in by_reason.items() if name != DROP_SPOOL_FULL}
        self.raise_issue(
            issues.POINTS_DROPPED,
            dropped=str(sum(others.values())),
            reason=", ".join(sorted(others)),
        )

    def clear_quiet_issues(self, *, spool_has_room: bool, memory_ok: bool) -> None:
        """Drop repairs clear themselves once nothing was dropped for a while and
        the spool (or memory) has room again."""
        if self._last_drop is None or not self._raised & {
            issues.SPOOL_FULL,
            issues.POINTS_DROPPED,
        }:
            return
        if dt_util.utcnow() - self._last_drop < QUIET_PERIOD:
            return
        if spool_has_room:
            self.clear(issues.SPOOL_FULL)
        if memory_ok:
            self.clear(issues.POINTS_DROPPED)

    def write_ok(self) -> None:
        """A write (or the probe) succeeded: the outage, if any, is over."""
        if self._failing_since is not None:
            self._failing_since = self._outage_told = None
            self.clear(issues.INFLUXDB_UNREACHABLE)

    def write_failed(self) -> None:
        """A write failed: the outage starts now, unless it already did."""
        if self._failing_since is None:
            self._failing_since = dt_util.utcnow()

    def check_outage(
        self, threshold: timedelta, *, unsent: int, room_mb: float
    ) -> None:
        """Raise the long-outage repair once no write succeeded for ``threshold``
        (and keep its numbers current while it lasts)."""
        since, now = self._failing_since, dt_util.utcnow()
        if since is None or now - since < threshold:
            return
        # Its numbers are refreshed once a minute, not on every consumer wake.
        if self._outage_told is not None and now - self._outage_told < OUTAGE_REFRESH:
            return
        self._outage_told = now
        self.raise_issue(
            issues.INFLUXDB_UNREACHABLE,
            since=dt_util.as_local(since).strftime("%Y-%m-%d %H:%M"),
            unsent=str(unsent),
            room=f"{room_mb:.0f}",
        )

    def raise_issue(self, kind: str, **placeholders: str) -> None:
        """Create or update one of the entry's repairs."""
        self._raised.add(kind)
        self.hooks.raise_issue(kind, placeholders)

    def clear(self, *kinds: str) -> None:
        """Remove the entry's repairs of these kinds."""
        for kind in kinds:
            self._raised.discard(kind)
            self.hooks.clear_issue(kind)

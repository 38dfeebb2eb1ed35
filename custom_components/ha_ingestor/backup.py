"""Backup platform: while a backup copies the config directory, each spool's main
file (InfluxDB's and the webhook's) holds every batch and stays still (new writes
wait in its write-ahead log)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant

from .const import DOMAIN, LOGGER
from .spool import Spool, SpoolError

if TYPE_CHECKING:
    from . import HaIngestorConfigEntry


async def async_pre_backup(hass: HomeAssistant) -> None:
    """Checkpoint every spool and stop its automatic checkpoints."""
    await _async_each_spool(
        hass,
        Spool.begin_backup,
        "Could not prepare the spool of %s for the backup, which goes on: %s",
    )


async def async_post_backup(hass: HomeAssistant) -> None:
    """Let every spool checkpoint again."""
    await _async_each_spool(
        hass, Spool.end_backup, "Could not resume the spool of %s after the backup: %s"
    )


async def _async_each_spool(
    hass: HomeAssistant, action: Callable[[Spool], None], failure: str
) -> None:
    """Run ``action`` on each loaded entry's spool; a spool that fails is logged,
    never raised into the user's backup."""
    entries: list[HaIngestorConfigEntry] = hass.config_entries.async_loaded_entries(
        DOMAIN
    )
    for entry in entries:
        data = entry.runtime_data
        for pipeline in (data.pipeline, data.webhook):
            if pipeline is None:
                continue
            try:
                await hass.async_add_executor_job(action, pipeline.spool)
            except SpoolError as err:
                LOGGER.warning(failure, entry.title, err)

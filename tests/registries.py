"""Registry helpers shared by the tests, across Home Assistant releases."""

from __future__ import annotations

import inspect
from typing import Any

from homeassistant.helpers import device_registry as dr


def via(parent: dr.DeviceEntry) -> dict[str, Any]:
    """The parent-device argument: ``via_device_id`` since HA 2026.x."""
    parameters = inspect.signature(dr.DeviceRegistry.async_get_or_create).parameters
    if "via_device_id" in parameters:
        return {"via_device_id": parent.id}
    return {"via_device": next(iter(parent.identifiers))}

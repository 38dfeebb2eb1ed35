"""Constants for HA Ingestor."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "ha_ingestor"
LOGGER = logging.getLogger(__package__)

# Config entry data keys: a public contract, kept exactly as documented.
CONF_API_VERSION: Final = "api_version"
CONF_URL: Final = "url"
CONF_VERIFY_SSL: Final = "verify_ssl"
CONF_SSL_CA_CERT: Final = "ssl_ca_cert"
CONF_DATABASE: Final = "database"
CONF_USERNAME: Final = "username"
CONF_PASSWORD: Final = "password"
CONF_RETENTION_POLICY: Final = "retention_policy"
CONF_TOKEN: Final = "token"
CONF_ORGANIZATION: Final = "organization"
CONF_BUCKET: Final = "bucket"

API_V1: Final = "1"
API_V2: Final = "2"
API_V3: Final = "3"
API_VERSIONS: Final = (API_V1, API_V2, API_V3)

# Option keys: a public contract.
CONF_EVENT_TYPES: Final = "event_types"
CONF_MQTT_TOPICS: Final = "mqtt_topics"
CONF_BATCH_SIZE: Final = "batch_size"
CONF_FLUSH_INTERVAL: Final = "flush_interval"

DEFAULT_EVENT_TYPES: Final = ("state_changed",)
DEFAULT_BATCH_SIZE: Final = 1000
DEFAULT_FLUSH_INTERVAL: Final = 1.0

# Event types offered in the options flow; any other type may be typed in.
SUGGESTED_EVENT_TYPES: Final = (
    "state_changed",
    "automation_triggered",
    "script_started",
    "call_service",
    "logbook_entry",
    "homeassistant_start",
    "homeassistant_stop",
    "device_registry_updated",
    "entity_registry_updated",
)

WRITE_TIMEOUT: Final = 10.0
# Longest wait between write attempts; a server's Retry-After is capped to it too.
BACKOFF_MAX: Final = 300.0

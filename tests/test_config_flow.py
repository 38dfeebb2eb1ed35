"""Config flow: each server kind against a real or faithful server; errors recover."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant import config_entries
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType, section
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components import ha_ingestor
from custom_components.ha_ingestor.config_flow import (
    MEASUREMENT_NAME_SCHEMA,
    OPTION_SECTIONS,
    OPTIONS_FLOW_RELOADS,
    RECONFIGURE_SCHEMAS,
    SCHEMAS,
)
from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server, VictoriaMetricsServer, free_port
from .tls import make_self_signed

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _start_flow(hass: HomeAssistant, kind: str) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": kind}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == kind
    return result["flow_id"]


def _assert_errors_on_fields(result: FlowResult) -> None:
    """Every error shows on a field of the form; only "unknown" at the top."""
    fields = {str(key) for key in result["data_schema"].schema}
    for key, error in result["errors"].items():
        assert key in fields or (key, error) == ("base", "unknown"), (key, fields)


def _form(options: dict[str, Any]) -> dict[str, Any]:
    """Options as the options form sends them: nested in its sections."""
    return {
        name: {str(key): options[str(key)] for key in fields.schema if key in options}
        for name, fields in OPTION_SECTIONS.items()
    }


def _v1_input(server: InfluxDB1Server, **overrides: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "database": "home",
        "username": server.admin_user,
        "password": server.admin_password,
        "verify_ssl": True,
    } | overrides


async def test_v1_flow_writes_to_the_real_server_and_creates_the_entry(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The user picks InfluxDB 1.x, the flow writes for real, the entry is created."""
    flow_id = await _start_flow(hass, "v1")
    result = await hass.config_entries.flow.async_configure(
        flow_id, _v1_input(influxdb_v1, retention_policy="autogen")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "home @ 127.0.0.1"
    assert result["data"] == {
        "api_version": "1",
        "url": influxdb_v1.url,
        "database": "home",
        "username": influxdb_v1.admin_user,
        "password": influxdb_v1.admin_password,
        "retention_policy": "autogen",
        "verify_ssl": True,
    }
    assert result["result"].unique_id == f"{influxdb_v1.url}|home"


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"password": "wrong"}, "password", "invalid_auth"),
        ({"database": "missing"}, "database", "database_not_found"),
        ({"url": "ftp://127.0.0.1:8086"}, "url", "invalid_url"),
        ({"url": "127.0.0.1:8086"}, "url", "invalid_url"),
        ({"url": "http://"}, "url", "invalid_url"),
        ({"url": "unreachable"}, "url", "cannot_connect"),
        ({"url": "http://admin:secret@127.0.0.1:8086"}, "url", "url_has_credentials"),
        ({"url": "http://admin@127.0.0.1:8086"}, "url", "url_has_credentials"),
        ({"url": "http://:secret@127.0.0.1:8086"}, "url", "url_has_credentials"),
        (
            {"retention_policy": "missing"},
            "retention_policy",
            "retention_policy_not_found",
        ),
    ],
)
async def test_v1_errors_land_on_their_field_and_recover(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    overrides: dict[str, str],
    field: str,
    error: str,
) -> None:
    """A wrong password, database, retention policy or URL (credentials in it
    included) shows on that field; fixing it succeeds."""
    if overrides.get("url") == "unreachable":
        overrides = {"url": f"http://127.0.0.1:{free_port()}"}
    flow_id = await _start_flow(hass, "v1")
    result = await hass.config_entries.flow.async_configure(
        flow_id, _v1_input(influxdb_v1, **overrides)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    _assert_errors_on_fields(result)
    assert "wrong" not in str(result)

    result = await hass.config_entries.flow.async_configure(
        flow_id, _v1_input(influxdb_v1)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_same_database_twice_is_aborted(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """The same server and database cannot be configured twice."""
    MockConfigEntry(
        domain=DOMAIN, unique_id=f"{influxdb_v1.url}|home", data={}
    ).add_to_hass(hass)
    flow_id = await _start_flow(hass, "v1")
    result = await hass.config_entries.flow.async_configure(
        flow_id, _v1_input(influxdb_v1, url=influxdb_v1.url + "/")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.parametrize("kind", ["v2", "v3"])
async def test_credentials_in_a_v2_or_v3_url_are_refused_and_recover(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, kind: str
) -> None:
    """The token servers refuse userinfo in the URL too; the clean URL succeeds and
    the entry's unique id and title carry no credentials."""
    data = (
        fake_influxdb.v2_entry_data() if kind == "v2" else fake_influxdb.v3_entry_data()
    )
    del data["api_version"]
    flow_id = await _start_flow(hass, kind)
    result = await hass.config_entries.flow.async_configure(
        flow_id, data | {"url": data["url"].replace("://", "://user:secret@")}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"url": "url_has_credentials"}

    result = await hass.config_entries.flow.async_configure(flow_id, data)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "home @ 127.0.0.1"
    assert result["result"].unique_id == f"{fake_influxdb.url}|home"


async def test_v2_flow_writes_through_the_v2_api(
    hass: HomeAssistant,
    victoria_metrics_server: VictoriaMetricsServer,
) -> None:
    """The v2 path (HA's shared session, /api/v2/write) reaches a real v2 endpoint."""
    flow_id = await _start_flow(hass, "v2")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            "url": victoria_metrics_server.url,
            "token": "any-token",
            "organization": "home-org",
            "bucket": "home",
            "verify_ssl": True,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"]["api_version"] == "2"
    assert result["result"].unique_id == f"{victoria_metrics_server.url}|home"


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"token": "bad-token"}, "token", "invalid_auth"),
        ({"bucket": "missing"}, "bucket", "bucket_not_found"),
        ({"organization": "nobody"}, "organization", "organization_not_found"),
    ],
)
async def test_v2_errors_land_on_their_field_and_recover(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    overrides: dict[str, str],
    field: str,
    error: str,
) -> None:
    """A bad token, bucket or organization shows on its field; fixing it succeeds."""
    good = {
        "url": fake_influxdb.url,
        "token": "good-token",
        "organization": "home-org",
        "bucket": "home",
        "verify_ssl": True,
    }
    flow_id = await _start_flow(hass, "v2")
    result = await hass.config_entries.flow.async_configure(flow_id, good | overrides)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    _assert_errors_on_fields(result)

    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"token": "bad-token"}, "token", "invalid_auth"),
        ({"database": "missing"}, "database", "database_not_found"),
    ],
)
async def test_v3_errors_land_on_their_field_and_recover(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    overrides: dict[str, str],
    field: str,
    error: str,
) -> None:
    """InfluxDB 3's native API: bad token and unknown database, then success."""
    good = {
        "url": fake_influxdb.url,
        "token": "good-token",
        "database": "home",
        "verify_ssl": True,
    }
    flow_id = await _start_flow(hass, "v3")
    result = await hass.config_entries.flow.async_configure(flow_id, good | overrides)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    _assert_errors_on_fields(result)

    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {"api_version": "3"} | good


@pytest.mark.parametrize(
    ("status", "errors"),
    [
        (503, {"url": "server_unavailable"}),
        (429, {"url": "server_unavailable"}),
        (418, {"base": "unknown"}),
    ],
)
async def test_busy_or_odd_server_answer_is_shown_and_recovers(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    status: int,
    errors: dict[str, str],
) -> None:
    """An overloaded or failing server (429, 5xx) shows on the URL; an answer the
    flow cannot place (HTTP 418) gives the general error. Trying again succeeds."""
    good = {"url": fake_influxdb.url, "token": "good-token", "database": "home"}
    flow_id = await _start_flow(hass, "v3")
    fake_influxdb.fail_next(status)
    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    _assert_errors_on_fields(result)
    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_unexpected_exception_shows_unknown_and_recovers(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A bug while testing the connection is logged and shown, never a crash."""
    good = {"url": fake_influxdb.url, "token": "good-token", "database": "home"}
    flow_id = await _start_flow(hass, "v3")
    with patch(
        "custom_components.ha_ingestor.config_flow.async_create_writer",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["errors"] == {"base": "unknown"}
    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_self_signed_tls_needs_its_ca(
    hass: HomeAssistant, tmp_path: Path, socket_enabled: None
) -> None:
    """A real InfluxDB with a self-signed certificate: without its CA the error is
    on the URL, a bad CA path on that field; with the CA file the flow succeeds.
    The v2 client refuses the certificate too, and gets past TLS with
    verification off."""
    cert_path, key_path = make_self_signed(tmp_path)
    server = InfluxDB1Server(certificate=cert_path, key=key_path).start()
    try:
        server.create_database("home")
        good = _v1_input(server)
        assert good["url"].startswith("https://")
        flow_id = await _start_flow(hass, "v1")
        result = await hass.config_entries.flow.async_configure(flow_id, good)
        assert result["errors"] == {"url": "ssl_error"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, good | {"ssl_ca_cert": str(tmp_path / "missing.pem")}
        )
        assert result["errors"] == {"ssl_ca_cert": "ssl_error"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, good | {"ssl_ca_cert": str(cert_path)}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.config_entries.async_unload(result["result"].entry_id)

        v2 = {"url": server.url, "token": "t", "organization": "o", "bucket": "b"}
        flow_id = await _start_flow(hass, "v2")
        result = await hass.config_entries.flow.async_configure(
            flow_id, v2 | {"verify_ssl": True}
        )
        assert result["errors"] == {"url": "ssl_error"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, v2 | {"verify_ssl": False}
        )
        # Past TLS, InfluxDB 1.x has no v2 write endpoint.
        assert result["errors"] == {"bucket": "bucket_not_found"}
    finally:
        server.cleanup()


async def test_reauth_takes_a_new_token_and_reloads(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A refused token starts reauth; a wrong new token errors; a good one fixes it."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{fake_influxdb.url}|home",
        data={
            "api_version": "2",
            "url": fake_influxdb.url,
            "token": "revoked-token",
            "organization": "home-org",
            "bucket": "home",
            "verify_ssl": True,
        },
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"token": "still-wrong"}
    )
    assert result["errors"] == {"token": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"token": "good-token"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data["token"] == "good-token"
    # The entry reloaded with the new token and writes again.
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    # Unloading closes the 2.x client's own HTTP session.
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("trouble", "error"),
    [
        ("unreachable", "cannot_connect"),
        ("busy", "server_unavailable"),
        ("database gone", "database_not_found"),
    ],
)
async def test_reauth_shows_any_connection_error_on_the_secret_and_recovers(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, trouble: str, error: str
) -> None:
    """Reauth's form has the token alone: an unreachable or busy server, or a
    database gone meanwhile, shows there rather than nowhere; once it is fixed,
    the new token is saved."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{fake_influxdb.url}|home",
        data=fake_influxdb.v3_entry_data() | {"token": "revoked-token"},
    )
    entry.add_to_hass(hass)
    if trouble == "unreachable":
        hass.config_entries.async_update_entry(
            entry, data=entry.data | {"url": f"http://127.0.0.1:{free_port()}"}
        )
    result = await entry.start_reauth_flow(hass)
    if trouble == "busy":
        fake_influxdb.fail_next(503)
    if trouble == "database gone":
        fake_influxdb.databases.discard("home")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"token": "good-token"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"token": error}
    _assert_errors_on_fields(result)

    hass.config_entries.async_update_entry(
        entry, data=entry.data | {"url": fake_influxdb.url}
    )
    fake_influxdb.databases.add("home")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"token": "good-token"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data["token"] == "good-token"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (
            {"api_version": "1", "url": "http://db:8086", "database": "home"},
            [
                "url",
                "database",
                "username",
                "password",
                "retention_policy",
                "verify_ssl",
                "ssl_ca_cert",
            ],
        ),
        (
            {
                "api_version": "2",
                "url": "http://db:8086",
                "token": "t",
                "organization": "o",
                "bucket": "home",
            },
            ["url", "token", "organization", "bucket", "verify_ssl", "ssl_ca_cert"],
        ),
        (
            {"api_version": "3", "url": "http://db:8181", "token": "t"}
            | {"database": "home"},
            ["url", "token", "database", "verify_ssl", "ssl_ca_cert"],
        ),
    ],
)
async def test_reconfigure_asks_for_the_secret_where_the_setup_form_did(
    hass: HomeAssistant, data: dict[str, str], fields: list[str]
) -> None:
    """Reconfigure keeps the setup form's order, the password right after the
    username; the secret may be left blank (it keeps the stored one)."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id="x", data=data)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    schema = result["data_schema"].schema
    assert [str(key) for key in schema] == fields
    secret = next(key for key in schema if str(key) in ("password", "token"))
    assert type(secret).__name__ == "Optional"


async def test_reconfigure_moves_to_another_database_keeping_the_password(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Reconfigure changes the database; a blank password keeps the stored one."""
    influxdb_v1.create_database("other")
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{influxdb_v1.url}|home",
        data={"api_version": "1"} | _v1_input(influxdb_v1),
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    schema_keys = {str(key): key for key in result["data_schema"].schema}
    assert schema_keys["url"].description == {"suggested_value": influxdb_v1.url}
    assert "suggested_value" not in (schema_keys["password"].description or {})

    new_input = _v1_input(influxdb_v1, database="missing")
    del new_input["password"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], new_input
    )
    assert result["errors"] == {"database": "database_not_found"}

    new_input["database"] = "other"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], new_input
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    # Reconfiguring the same database again keeps its unique id.
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], new_input | {"verify_ssl": False}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data["database"] == "other"
    assert entry.data["verify_ssl"] is False
    assert entry.data["password"] == influxdb_v1.admin_password
    assert entry.unique_id == f"{influxdb_v1.url}|other"
    await hass.async_block_till_done()
    influxdb_v1.drop_database("other")


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"url": "unreachable"}, "url", "cannot_connect"),
        ({"url": "http://admin@127.0.0.1:8086"}, "url", "url_has_credentials"),
        ({"password": "wrong"}, "password", "invalid_auth"),
        ({"database": "missing"}, "database", "database_not_found"),
        (
            {"retention_policy": "missing"},
            "retention_policy",
            "retention_policy_not_found",
        ),
        ({"ssl_ca_cert": "/nonexistent/ca.pem"}, "ssl_ca_cert", "ssl_error"),
    ],
)
async def test_reconfigure_errors_land_on_their_field_and_recover(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    overrides: dict[str, str],
    field: str,
    error: str,
) -> None:
    """Each connection error of reconfigure shows on the field it concerns; the
    corrected form saves."""
    if overrides.get("url") == "unreachable":
        overrides = {"url": f"http://127.0.0.1:{free_port()}"}
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{influxdb_v1.url}|home",
        data={"api_version": "1"} | _v1_input(influxdb_v1),
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _v1_input(influxdb_v1, **overrides)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    _assert_errors_on_fields(result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _v1_input(influxdb_v1)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_onto_an_existing_entry_is_aborted(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Reconfiguring onto a database another entry already writes to is refused."""
    influxdb_v1.create_database("other")
    MockConfigEntry(domain=DOMAIN, unique_id=f"{influxdb_v1.url}|other").add_to_hass(
        hass
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{influxdb_v1.url}|home",
        data={"api_version": "1"} | _v1_input(influxdb_v1),
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _v1_input(influxdb_v1, database="other")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data["database"] == "home"
    influxdb_v1.drop_database("other")


async def test_options_form_groups_the_fields_in_sections(hass: HomeAssistant) -> None:
    """The options form shows nine sections, the first one open; inside them the
    fields hold the current values, and number fields carry their unit."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="x", data={}, options={"batch_size": 250}
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "init"
    sections = {str(key): value for key, value in result["data_schema"].schema.items()}
    assert list(sections) == [
        "capture",
        "schema",
        "filters",
        "delivery",
        "durability",
        "context",
        "republish",
        "webhook",
        "privacy",
    ]
    assert all(isinstance(value, section) for value in sections.values())
    assert [value.options["collapsed"] for value in sections.values()] == [
        False,
        *[True] * 8,
    ]
    fields = {
        str(key): (key, selector)
        for value in sections.values()
        for key, selector in value.schema.schema.items()
    }
    assert "measurement_name" not in fields
    assert fields["event_types"][0].description == {
        "suggested_value": ["state_changed"]
    }
    assert fields["batch_size"][0].description == {"suggested_value": 250}
    units = {
        name: selector.config["unit_of_measurement"]
        for name, (_, selector) in fields.items()
        if "unit_of_measurement" in getattr(selector, "config", {})
    }
    assert units == {
        "mqtt_max_payload": "characters",
        "dedup_window": "s",
        "batch_size": "points",
        "flush_interval": "s",
        "max_memory_points": "points",
        "max_spool_mb": "MB",
        "outage_alert_minutes": "minutes",
    }


async def test_options_are_validated_and_stored_flat(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Bad topic filters, an empty capture, a malformed override or a fractional
    batch size are refused on the section that holds the field (HA's forms show no
    error inside a section); the options are stored flat, under their keys."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{influxdb_v1.url}|home",
        data={"api_version": "1"} | _v1_input(influxdb_v1),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    result = await hass.config_entries.options.async_init(entry.entry_id)

    options = {
        "event_types": ["state_changed", "automation_triggered", "my_custom_event"],
        "mqtt_topics": ["zigbee2mqtt/#", "bad/#/topic"],
        "batch_size": 500,
        "flush_interval": 2.5,
        "measurement": "unit_of_measurement",
        "measurement_overrides": ["sensor.outdoor=weather"],
        "exclude_domains": ["automation"],
        "dedup_window": 5,
        "mqtt_max_payload": 1024,
        "mqtt_retained": True,
        "outage_alert_minutes": 30,
    }
    for bad, errors in (
        ({}, {"capture": "invalid_topic"}),
        ({"event_types": [], "mqtt_topics": []}, {"capture": "nothing_selected"}),
        (
            {"measurement_overrides": ["no equals sign"]},
            {"schema": "invalid_overrides"},
        ),
        ({"batch_size": 1.5}, {"delivery": "invalid_option"}),
    ):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], _form(options | bad)
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
        _assert_errors_on_fields(result)
        options["mqtt_topics"] = ["zigbee2mqtt/#", " "]

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _form(options)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert {key: entry.options[key] for key in options} == options | {
        "mqtt_topics": ["zigbee2mqtt/#"]
    }
    assert entry.options["include_domains"] == []
    assert entry.options["measurement_name"] == "home_assistant"
    # Saving reloaded the entry, with the new options.
    await hass.async_block_till_done()
    assert entry.runtime_data.options.outage_alert_minutes == 30
    assert await hass.config_entries.async_unload(entry.entry_id)


async def _loaded_entry(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="x", data=fake_influxdb.v3_entry_data()
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    return entry


async def test_sink_and_privacy_options_are_refused_on_their_section(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """A webhook without a secret, a webhook URL that is not http(s) or holds
    credentials, a topic prefix with a wildcard and more than 10 context entities
    are each refused on their section; fixed, the sinks and privacy are stored."""
    entry = await _loaded_entry(hass, fake_influxdb)
    options = {
        "event_types": ["state_changed"],
        "batch_size": 100,
        "flush_interval": 1,
        "measurement": "domain",
        "context_entities": ["weather.home", "sun.sun"],
        "context_attributes": ["temperature", "elevation"],
        "republish": True,
        "republish_prefix": "home/ingestor",
        "republish_qos": 1,
        "republish_retain": False,
        "webhook_url": "http://127.0.0.1:9/hook",
        "webhook_secret": "s3cret",
        "drop_location": False,
        "pseudonymize_users": True,
        "attributes_never_export": ["battery"],
    }
    result = await hass.config_entries.options.async_init(entry.entry_id)
    for bad, errors in (
        ({"webhook_secret": ""}, {"webhook": "webhook_secret_required"}),
        ({"webhook_url": "ftp://example.com/x"}, {"webhook": "invalid_webhook_url"}),
        (
            {"webhook_url": "https://user:pw@example.com/x"},
            {"webhook": "invalid_webhook_url"},
        ),
        ({"republish_prefix": "home/#"}, {"republish": "invalid_republish_prefix"}),
        (
            {"context_entities": [f"sensor.s{n}" for n in range(11)]},
            {"context": "too_many_context_entities"},
        ),
    ):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], _form(options | bad)
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
        _assert_errors_on_fields(result)

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _form(options)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert {key: entry.options[key] for key in options} == options
    await hass.async_block_till_done()
    assert entry.runtime_data.webhook is not None
    assert entry.runtime_data.republisher is not None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_fixed_measurement_asks_for_its_name_in_a_second_step(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """The name is asked for only when "Fixed name" is chosen, in a step of its
    own; an empty name is refused there. Another strategy skips the step and keeps
    the stored name for a later switch back."""
    entry = await _loaded_entry(hass, fake_influxdb)
    options = {
        "event_types": ["state_changed"],
        "batch_size": 100,
        "flush_interval": 1,
        "measurement": "fixed",
    }
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _form(options)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "measurement_name"
    [key] = result["data_schema"].schema
    assert key.description == {"suggested_value": "home_assistant"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"measurement_name": "  "}
    )
    assert result["errors"] == {"measurement_name": "measurement_name_required"}
    _assert_errors_on_fields(result)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"measurement_name": "ha"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["measurement"] == "fixed"
    assert entry.options["measurement_name"] == "ha"

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _form(options | {"measurement": "entity_id"})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["measurement"] == "entity_id"
    assert entry.options["measurement_name"] == "ha"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_takes_credentials_out_of_an_old_url(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """An entry stored by an older release with the credentials in its URL keeps
    working; reconfigure refuses that URL until the credentials are moved to their
    fields, and the unique id and title then carry none."""
    old_url = influxdb_v1.url.replace(
        "://", f"://{influxdb_v1.admin_user}:{influxdb_v1.admin_password}@"
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"home @ {old_url}",
        unique_id=f"{old_url}|home",
        data={"api_version": "1", "url": old_url, "database": "home"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED

    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"url": old_url, "database": "home", "verify_ssl": True}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"url": "url_has_credentials"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _v1_input(influxdb_v1)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.unique_id == f"{influxdb_v1.url}|home"
    assert entry.title == "home @ 127.0.0.1"
    assert entry.data["url"] == influxdb_v1.url
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_measurement_by_device_class_is_stored_as_offered(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """The form offers "domain_device_class" and the options store just that."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="x",
        data=fake_influxdb.v3_entry_data(),
        minor_version=2,
        options={
            "event_types": ["state_changed"],
            "measurement": "domain_device_class",
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    schema = result["data_schema"].schema
    [measurement] = [
        key
        for value in schema.values()
        for key in value.schema.schema
        if str(key) == "measurement"
    ]
    assert measurement.description == {"suggested_value": "domain_device_class"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        _form(
            {
                "event_types": ["state_changed"],
                "batch_size": 100,
                "flush_interval": 1,
                "measurement": "domain_device_class",
            }
        ),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["measurement"] == "domain_device_class"
    await hass.async_block_till_done()
    assert entry.runtime_data.options.measurement == "domain_device_class"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_entry_with_the_old_spelling_migrates_and_names_measurements_alike(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """An entry of an older release stored "domain__device_class": it migrates to
    "domain_device_class" and still records sensor__temperature."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{influxdb_v1.url}|home",
        data={"api_version": "1"} | _v1_input(influxdb_v1),
        version=1,
        minor_version=1,
        options={
            "event_types": ["state_changed"],
            "measurement": "domain__device_class",
            "batch_size": 10,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 2)
    assert entry.options == {
        "event_types": ["state_changed"],
        "measurement": "domain_device_class",
        "batch_size": 10,
    }
    assert entry.runtime_data.options.measurement == "domain_device_class"

    hass.states.async_set(
        "sensor.t", "20", {"device_class": "temperature", "unit_of_measurement": "°C"}
    )
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    [series] = influxdb_v1.query(
        "home", "SELECT state FROM /.*/ WHERE entity_id = 'sensor.t'"
    )
    assert series["name"] == "sensor__temperature"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_entry_of_a_newer_release_is_left_alone(hass: HomeAssistant) -> None:
    """An entry a newer major version wrote is not set up, nor changed."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id="x", data={}, version=2)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
    assert entry.version == 2


def test_every_field_has_a_label_and_a_description() -> None:
    """Each field of each form, in the options' sections too, has its label and
    its description, and no text looks like HTML (the frontend would drop it)."""
    text = (Path(ha_ingestor.__file__).parent / "translations" / "en.json").read_text(
        encoding="utf-8"
    )
    assert "<" not in text
    translations = json.loads(text)
    steps = translations["config"]["step"]
    forms = {
        "v1": (steps["v1"], SCHEMAS["1"]),
        "v2": (steps["v2"], SCHEMAS["2"]),
        "v3": (steps["v3"], SCHEMAS["3"]),
        **{
            f"reconfigure {kind}": (steps["reconfigure"], schema)
            for kind, schema in RECONFIGURE_SCHEMAS.items()
        },
        "measurement_name": (
            translations["options"]["step"]["measurement_name"],
            MEASUREMENT_NAME_SCHEMA,
        ),
    }
    sections = translations["options"]["step"]["init"]["sections"]
    assert list(sections) == list(OPTION_SECTIONS)
    for name, schema in OPTION_SECTIONS.items():
        assert sections[name]["name"]
        assert sections[name]["description"]
        forms[f"options {name}"] = (sections[name], schema)
    for form, (strings, schema) in forms.items():
        fields = [str(key) for key in schema.schema]
        assert set(strings["data"]) >= set(fields), form
        assert set(strings["data_description"]) >= set(fields), form
    reauth = steps["reauth_confirm"]
    assert (
        set(reauth["data"])
        == set(reauth["data_description"])
        == {
            "password",
            "token",
        }
    )


def test_options_flow_reloads_by_itself_where_home_assistant_can() -> None:
    """From Home Assistant 2025.8 the options flow reloads the entry (and then the
    integration must not register an update listener); before, it cannot."""
    assert OPTIONS_FLOW_RELOADS is hasattr(config_entries, "OptionsFlowWithReload")


async def test_saving_options_reloads_the_entry_once(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, caplog: pytest.LogCaptureFixture
) -> None:
    """Saved options take effect at once: the entry reloads a single time and runs
    with them, without Home Assistant warning about an update listener."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{fake_influxdb.url}|home",
        data=fake_influxdb.v3_entry_data(),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    with patch.object(
        ha_ingestor, "async_setup_entry", wraps=ha_ingestor.async_setup_entry
    ) as setup_entry:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            _form(
                {
                    "event_types": ["state_changed"],
                    "batch_size": 10,
                    "flush_interval": 1,
                    "measurement": "domain",
                }
            ),
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
    assert setup_entry.call_count == 1
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.options.batch_size == 10
    assert "update listener" not in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.current_ha_only
async def test_reauth_and_reconfigure_reload_a_loaded_entry_once(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, caplog: pytest.LogCaptureFixture
) -> None:
    """Reauth and reconfigure reload the entry a single time, without Home
    Assistant warning about an update listener (from 2026.12 an error). Older
    releases, which keep the listener, reload twice."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{fake_influxdb.url}|home",
        data=fake_influxdb.v3_entry_data(),
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    fake_influxdb.tokens.add("new-token")
    with patch.object(
        ha_ingestor, "async_setup_entry", wraps=ha_ingestor.async_setup_entry
    ) as setup_entry:
        result = await entry.start_reauth_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"token": "new-token"}
        )
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
        assert setup_entry.call_count == 1

        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {"url": fake_influxdb.url, "database": "home", "verify_ssl": False},
        )
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        assert setup_entry.call_count == 2
    assert entry.state is ConfigEntryState.LOADED
    assert entry.data["token"] == "new-token"
    assert entry.data["verify_ssl"] is False
    assert "update listener" not in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)

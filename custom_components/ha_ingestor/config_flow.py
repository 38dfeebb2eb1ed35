"""Config flow: server kind → connection; reauth, reconfigure and options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.importlib import async_import_module
from homeassistant.helpers.selector import (
    AreaSelector,
    AreaSelectorConfig,
    BooleanSelector,
    DeviceSelector,
    DeviceSelectorConfig,
    EntitySelector,
    EntitySelectorConfig,
    LabelSelector,
    LabelSelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from pydantic import ValidationError

try:  # Home Assistant 2026.x validates with probatio, older releases voluptuous
    import probatio as vol
except ImportError:  # pragma: no cover - exercised by the minimum-version run
    import voluptuous as vol  # type: ignore[no-redef]

try:  # Home Assistant 2025.8 and later reload the entry when its options change
    from homeassistant.config_entries import OptionsFlowWithReload as _OptionsFlow
except ImportError:  # pragma: no cover - exercised by the minimum-version run
    _OptionsFlow = OptionsFlow  # type: ignore[misc,assignment]

from .const import (
    API_V1,
    API_V2,
    API_V3,
    CONF_API_VERSION,
    CONF_BATCH_SIZE,
    CONF_BUCKET,
    CONF_DATABASE,
    CONF_EVENT_TYPES,
    CONF_FLUSH_INTERVAL,
    CONF_MQTT_TOPICS,
    CONF_ORGANIZATION,
    CONF_PASSWORD,
    CONF_RETENTION_POLICY,
    CONF_SSL_CA_CERT,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
    DOMAIN,
    LOGGER,
    SUGGESTED_EVENT_TYPES,
)
from .models import IngestorOptions, MeasurementStrategy
from .writer import (
    CannotConnect,
    InvalidAuth,
    InvalidUrl,
    RetryLater,
    SslError,
    TargetNotFound,
    WriteError,
    async_create_writer,
    parse_url,
)

_TEXT = TextSelector()
_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_SECRET = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_TLS: dict[vol.Marker, Any] = {
    vol.Required(CONF_VERIFY_SSL, default=True): BooleanSelector(),
    vol.Optional(CONF_SSL_CA_CERT): _TEXT,
}
SCHEMAS: dict[str, vol.Schema] = {
    API_V1: vol.Schema(
        {
            vol.Required(CONF_URL, default="http://localhost:8086"): _URL,
            vol.Required(CONF_DATABASE, default="home_assistant"): _TEXT,
            vol.Optional(CONF_USERNAME): _TEXT,
            vol.Optional(CONF_PASSWORD): _SECRET,
            vol.Optional(CONF_RETENTION_POLICY): _TEXT,
            **_TLS,
        }
    ),
    API_V2: vol.Schema(
        {
            vol.Required(CONF_URL, default="http://localhost:8086"): _URL,
            vol.Required(CONF_TOKEN): _SECRET,
            vol.Required(CONF_ORGANIZATION): _TEXT,
            vol.Required(CONF_BUCKET, default="home_assistant"): _TEXT,
            **_TLS,
        }
    ),
    API_V3: vol.Schema(
        {
            vol.Required(CONF_URL, default="http://localhost:8181"): _URL,
            vol.Required(CONF_TOKEN): _SECRET,
            vol.Required(CONF_DATABASE, default="home_assistant"): _TEXT,
            **_TLS,
        }
    ),
}
# Reauth asks only for the secret of each server kind; reconfigure may leave it blank.
SECRET_KEY = {API_V1: CONF_PASSWORD, API_V2: CONF_TOKEN, API_V3: CONF_TOKEN}
# Whether saving options reloads the entry by itself; when not, the integration
# reloads it from an update listener (which newer releases must not have).
OPTIONS_FLOW_RELOADS: Final[bool] = _OptionsFlow is not OptionsFlow


def _target(data: Mapping[str, Any]) -> str:
    return str(
        data[CONF_BUCKET] if data[CONF_API_VERSION] == API_V2 else data[CONF_DATABASE]
    )


def _unique_id(data: Mapping[str, Any]) -> str:
    # Without userinfo, which entries stored by older releases may have.
    url = parse_url(data[CONF_URL]).with_user(None)
    return f"{str(url).rstrip('/')}|{_target(data)}"


def _title(data: Mapping[str, Any]) -> str:
    return f"{_target(data)} @ {parse_url(data[CONF_URL]).host}"


def _url_errors(data: Mapping[str, Any]) -> dict[str, str]:
    """Check the URL a user typed: http(s), a host, and no credentials (they
    belong in their own fields, which diagnostics redact and logs never show)."""
    try:
        url = parse_url(data[CONF_URL])
    except InvalidUrl:
        return {CONF_URL: "invalid_url"}
    if url.user is not None or url.password is not None:
        return {CONF_URL: "url_has_credentials"}
    return {}


async def _async_validate(flow: ConfigFlow, data: dict[str, Any]) -> dict[str, str]:
    """Write an empty body to the server: it checks reachability, TLS, auth and target.

    A ping alone passes on servers where writes fail, so the flow uses the write
    endpoint itself; an empty body stores nothing.
    """
    try:
        writer = await async_create_writer(flow.hass, data)
        try:
            await writer.async_write(b"")
        finally:
            await writer.async_close()
    except WriteError as err:
        return _errors_for(err, data)
    except Exception:
        LOGGER.exception("Unexpected error while testing the InfluxDB connection")
        return {"base": "unknown"}
    return {}


def _errors_for(err: WriteError, data: dict[str, Any]) -> dict[str, str]:
    """Put a failed test write's error on the field it concerns."""
    api_version = data[CONF_API_VERSION]
    if isinstance(err, SslError):
        return {
            CONF_SSL_CA_CERT if data.get(CONF_SSL_CA_CERT) else CONF_URL: "ssl_error"
        }
    if isinstance(err, CannotConnect):
        return {CONF_URL: "cannot_connect"}
    if isinstance(err, RetryLater):
        return {CONF_URL: "server_unavailable"}
    if isinstance(err, InvalidAuth):
        return {SECRET_KEY[api_version]: "invalid_auth"}
    if isinstance(err, TargetNotFound):
        if "retention policy not found" in str(err):
            return {CONF_RETENTION_POLICY: "retention_policy_not_found"}
        if api_version != API_V2:
            return {CONF_DATABASE: "database_not_found"}
        if "organization" in str(err):
            return {CONF_ORGANIZATION: "organization_not_found"}
        return {CONF_BUCKET: "bucket_not_found"}
    LOGGER.warning("InfluxDB refused the test write: %s", err)
    return {"base": "unknown"}


class HaIngestorConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a connection to one InfluxDB database or bucket."""

    VERSION = 1
    # 2: the measurement strategy "domain__device_class" is stored as
    # "domain_device_class" (async_migrate_entry converts older entries).
    MINOR_VERSION = 2

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> HaIngestorOptionsFlow:
        """Return the options flow."""
        return HaIngestorOptionsFlow()

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Let the user pick the kind of server first."""
        return self.async_show_menu(step_id="user", menu_options=["v1", "v2", "v3"])

    async def async_step_v1(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Connect to InfluxDB 1.x."""
        return await self._async_step_server(API_V1, user_input)

    async def async_step_v2(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Connect to InfluxDB 2.x, or 3.x through its v2-compatible API."""
        return await self._async_step_server(API_V2, user_input)

    async def async_step_v3(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Connect to InfluxDB 3 through its native API."""
        return await self._async_step_server(API_V3, user_input)

    async def _async_step_server(
        self, api_version: str, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {CONF_API_VERSION: api_version, **user_input}
            errors = _url_errors(data) or await _async_validate(self, data)
            if not errors:
                await self.async_set_unique_id(_unique_id(data))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=_title(data), data=data)
        return self.async_show_form(
            step_id=f"v{api_version}",
            data_schema=self.add_suggested_values_to_schema(
                SCHEMAS[api_version], user_input
            ),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the server settings; a blank secret keeps the stored one."""
        entry = self._get_reconfigure_entry()
        api_version = entry.data[CONF_API_VERSION]
        errors: dict[str, str] = {}
        if user_input is not None:
            secret = SECRET_KEY[api_version]
            data = {CONF_API_VERSION: api_version, **user_input}
            if not data.get(secret) and entry.data.get(secret):
                data[secret] = entry.data[secret]
            errors = _url_errors(data) or await _async_validate(self, data)
            if not errors:
                unique_id = _unique_id(data)
                if unique_id != entry.unique_id:
                    await self.async_set_unique_id(unique_id)
                    self._abort_if_unique_id_configured()
                return self.async_update_reload_and_abort(
                    entry, unique_id=unique_id, title=_title(data), data=data
                )
        suggested = {
            k: v
            for k, v in (user_input or entry.data).items()
            if k not in SECRET_KEY.values()
        }
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                RECONFIGURE_SCHEMAS[api_version], suggested
            ),
            errors=errors,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Start reauthentication when the server refuses the credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new token or password."""
        entry = self._get_reauth_entry()
        secret = SECRET_KEY[entry.data[CONF_API_VERSION]]
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = await _async_validate(self, {**entry.data, **user_input})
            if not errors:
                return self.async_update_reload_and_abort(
                    entry, data_updates=user_input
                )
            # The form has the secret alone: an error about another field (the
            # server is down, the database gone) is shown there, not lost.
            errors = {
                key if key == "base" else secret: error for key, error in errors.items()
            }
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(secret): _SECRET}),
            description_placeholders={"title": entry.title},
            errors=errors,
        )


class HaIngestorOptionsFlow(_OptionsFlow):
    """Pipeline options, in sections; the entry reloads when they change.

    The sections are presentation only: the options are stored flat, under the
    same keys as before there were sections.
    """

    def __init__(self) -> None:
        """Start with nothing chosen."""
        self._options: dict[str, Any] = {}

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Edit what is captured, how it is named and filtered, and delivered."""
        current = IngestorOptions.from_entry_options(self.config_entry.options)
        errors: dict[str, str] = {}
        if user_input is None:
            values = current.model_dump(mode="json")
        else:
            values = {k: v for part in user_input.values() for k, v in part.items()}
            # Asked for in the next step, and only for a fixed name.
            values["measurement_name"] = current.measurement_name
            options, errors = await _async_validate_options(self.hass, values)
            if options is not None:
                self._options = options.model_dump(mode="json")
                if options.measurement is MeasurementStrategy.FIXED:
                    return await self.async_step_measurement_name()
                return self.async_create_entry(data=self._options)
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(
                {
                    vol.Required(name): section(
                        self.add_suggested_values_to_schema(fields, values),
                        {"collapsed": name != "capture"},
                    )
                    for name, fields in OPTION_SECTIONS.items()
                }
            ),
            errors=errors,
        )

    async def async_step_measurement_name(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the measurement name when "Fixed name" is chosen."""
        errors: dict[str, str] = {}
        if user_input is not None:
            options, errors = await _async_validate_options(
                self.hass, self._options | user_input
            )
            if options is not None:
                return self.async_create_entry(data=options.model_dump(mode="json"))
        return self.async_show_form(
            step_id="measurement_name",
            data_schema=self.add_suggested_values_to_schema(
                MEASUREMENT_NAME_SCHEMA, user_input or self._options
            ),
            errors=errors,
        )


def _reconfigure_schema(api_version: str) -> vol.Schema:
    """The server kind's form with its secret optional, in the same place."""
    secret = SECRET_KEY[api_version]
    return vol.Schema(
        {
            vol.Optional(secret) if str(key) == secret else key: value
            for key, value in SCHEMAS[api_version].schema.items()
        }
    )


RECONFIGURE_SCHEMAS: Final = {
    api_version: _reconfigure_schema(api_version) for api_version in SCHEMAS
}


def _list(options: list[str] | None = None) -> SelectSelector:
    """A free-text list, with suggestions when given."""
    return SelectSelector(
        SelectSelectorConfig(options=options or [], multiple=True, custom_value=True)
    )


def _number(low: float, high: float, unit: str, step: float = 1) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=low,
            max=high,
            step=step,
            mode=NumberSelectorMode.BOX,
            unit_of_measurement=unit,
        )
    )


def _entities() -> EntitySelector:
    return EntitySelector(EntitySelectorConfig(multiple=True))


def _areas() -> AreaSelector:
    return AreaSelector(AreaSelectorConfig(multiple=True))


def _labels() -> LabelSelector:
    return LabelSelector(LabelSelectorConfig(multiple=True))


def _devices() -> DeviceSelector:
    return DeviceSelector(DeviceSelectorConfig(multiple=True))


# The options form, section by section; the first one opens expanded.
OPTION_SECTIONS: Final[dict[str, vol.Schema]] = {
    "capture": vol.Schema(
        {
            vol.Required(CONF_EVENT_TYPES): _list(list(SUGGESTED_EVENT_TYPES)),
            vol.Optional(CONF_MQTT_TOPICS): _list(),
            vol.Optional("mqtt_retained"): BooleanSelector(),
            vol.Optional("mqtt_max_payload"): _number(16, 1_048_576, "characters"),
        }
    ),
    "schema": vol.Schema(
        {
            vol.Required("measurement"): SelectSelector(
                SelectSelectorConfig(
                    options=[strategy.value for strategy in MeasurementStrategy],
                    translation_key="measurement",
                )
            ),
            vol.Optional("measurement_overrides"): _list(),
            vol.Optional("attributes_include"): _list(),
            vol.Optional("attributes_exclude"): _list(),
        }
    ),
    "filters": vol.Schema(
        {
            vol.Optional("include_domains"): _list(),
            vol.Optional("include_entities"): _entities(),
            vol.Optional("include_entity_globs"): _list(),
            vol.Optional("include_areas"): _areas(),
            vol.Optional("include_labels"): _labels(),
            vol.Optional("include_devices"): _devices(),
            vol.Optional("exclude_domains"): _list(),
            vol.Optional("exclude_entities"): _entities(),
            vol.Optional("exclude_entity_globs"): _list(),
            vol.Optional("exclude_areas"): _areas(),
            vol.Optional("exclude_labels"): _labels(),
            vol.Optional("exclude_devices"): _devices(),
            vol.Optional("dedup_window"): _number(0, 86_400, "s", 0.1),
        }
    ),
    "delivery": vol.Schema(
        {
            vol.Required(CONF_BATCH_SIZE): _number(1, 100_000, "points"),
            vol.Required(CONF_FLUSH_INTERVAL): _number(0.1, 3600, "s", 0.1),
            vol.Optional("compress"): BooleanSelector(),
        }
    ),
    "durability": vol.Schema(
        {
            vol.Optional("max_memory_points"): _number(100, 10_000_000, "points"),
            vol.Optional("max_spool_mb"): _number(0.01, 100_000, "MB", 0.01),
            vol.Optional("outage_alert_minutes"): _number(1, 10_080, "minutes"),
        }
    ),
    "context": vol.Schema(
        {
            vol.Optional("context_entities"): _entities(),
            vol.Optional("context_attributes"): _list(
                ["temperature", "humidity", "pressure", "wind_speed", "elevation"]
            ),
        }
    ),
    "republish": vol.Schema(
        {
            vol.Optional("republish"): BooleanSelector(),
            vol.Optional("republish_prefix"): _TEXT,
            vol.Optional("republish_qos"): NumberSelector(
                NumberSelectorConfig(min=0, max=1, step=1, mode=NumberSelectorMode.BOX)
            ),
            vol.Optional("republish_retain"): BooleanSelector(),
        }
    ),
    "webhook": vol.Schema(
        {
            vol.Optional("webhook_url"): _URL,
            vol.Optional("webhook_secret"): _SECRET,
        }
    ),
    "privacy": vol.Schema(
        {
            vol.Optional("drop_location"): BooleanSelector(),
            vol.Optional("pseudonymize_users"): BooleanSelector(),
            vol.Optional("attributes_never_export"): _list(
                ["latitude", "longitude", "gps_accuracy", "altitude"]
            ),
        }
    ),
}
# HA's forms cannot show an error on a field inside a section: it goes on the section.
_SECTION_OF: Final = {
    str(key): name for name, fields in OPTION_SECTIONS.items() for key in fields.schema
}
# Errors more telling than "invalid_option" for the fields users most often get wrong.
_FIELD_ERRORS: Final = {
    "measurement_overrides": "invalid_overrides",
    "measurement_name": "measurement_name_required",
    "webhook_url": "invalid_webhook_url",
    "republish_prefix": "invalid_republish_prefix",
    "context_entities": "too_many_context_entities",
}
MEASUREMENT_NAME_SCHEMA = vol.Schema({vol.Required("measurement_name"): _TEXT})


async def _async_validate_options(
    hass: HomeAssistant, values: dict[str, Any]
) -> tuple[IngestorOptions | None, dict[str, str]]:
    """Check flat options; errors land on the section (or field) they concern."""
    if topics := values.get(CONF_MQTT_TOPICS):
        # MQTT's code (about 2.4 MB once imported) loads only when it is used.
        util = await async_import_module(hass, "homeassistant.components.mqtt.util")
        for topic in topics:
            try:
                util.valid_subscribe_topic(topic)
            except vol.Invalid:
                return None, {_SECTION_OF[CONF_MQTT_TOPICS]: "invalid_topic"}
    if values.get("webhook_url") and not values.get("webhook_secret"):
        return None, {_SECTION_OF["webhook_secret"]: "webhook_secret_required"}
    if values.get("webhook_url"):
        try:
            parse_url(values["webhook_url"])
        except InvalidUrl:
            return None, {_SECTION_OF["webhook_url"]: "invalid_webhook_url"}
        if "@" in values["webhook_url"].partition("://")[2].partition("/")[0]:
            return None, {_SECTION_OF["webhook_url"]: "invalid_webhook_url"}
    try:
        return IngestorOptions.model_validate(values), {}
    except ValidationError as err:
        location = err.errors()[0]["loc"]
        if not location:  # the model's own check: something must be captured
            return None, {_SECTION_OF[CONF_EVENT_TYPES]: "nothing_selected"}
        field = str(location[0])
        error = _FIELD_ERRORS.get(field, "invalid_option")
        return None, {_SECTION_OF.get(field, field): error}

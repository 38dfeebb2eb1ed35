"""The Grafana dashboards in dashboards/grafana/: importable as they are, and every
panel's and variable's InfluxQL answers from what the real pipeline wrote to a
real InfluxDB 1.x."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
from pathlib import Path
import re
from typing import Any
from unittest.mock import PropertyMock, patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.coordinator import UPDATE_INTERVAL

from .servers import InfluxDB1Server

# (entity id, area, device, device class, unit) of the home the tests record.
HOME_ENTITIES: tuple[tuple[str, str | None, str, str | None, str | None], ...] = (
    ("light.kitchen", "Kitchen", "Kitchen light", None, None),
    ("switch.coffee_maker", "Kitchen", "Coffee maker", None, None),
    ("binary_sensor.hall_motion", "Hall", "Hall motion", "motion", None),
    ("sensor.kitchen_power", "Kitchen", "Kitchen plug", "power", "W"),
    ("sensor.kitchen_energy", "Kitchen", "Kitchen plug", "energy", "kWh"),
    ("sensor.bedroom_power", "Bedroom", "Bedroom plug", "power", "W"),
    ("sensor.bedroom_energy", "Bedroom", "Bedroom plug", "energy", "kWh"),
    ("sensor.bedroom_temperature", "Bedroom", "Bedroom sensor", "temperature", "°C"),
    ("sensor.outdoor_temperature", None, "Weather station", "temperature", "°C"),
)
FLOORS = {"Kitchen": "Ground floor", "Hall": "Ground floor", "Bedroom": "First floor"}
AUTOMATION = "automation.evening_lights"
# The context entity: its value rides along on every point.
OUTDOOR = "sensor.outdoor_temperature"
# Readings every 30 minutes for two and a half days.
STEPS = 5 * 24
LAST = timedelta(minutes=30 * (STEPS - 1))
# The bedroom sensor is unavailable from 02:00 until its next reading at 05:00
# on the second day.
GAP = (timedelta(days=1, hours=2), timedelta(days=1, hours=5))


@dataclass(kw_only=True)
class RecordedHome:
    """What ``record_home`` wrote, for the tests' expectations."""

    entry: MockConfigEntry
    start: datetime
    end: datetime


def _register_home(hass: HomeAssistant) -> None:
    """Floors, areas, devices and entities of the home, as the registries hold them."""
    source = MockConfigEntry(domain="demo")
    source.add_to_hass(hass)
    floors = fr.async_get(hass)
    areas = ar.async_get(hass)
    area_ids = {}
    for area, floor in FLOORS.items():
        floor_entry = floors.async_get_floor_by_name(floor) or floors.async_create(
            floor
        )
        area_ids[area] = areas.async_create(area, floor_id=floor_entry.floor_id).id
    devices = dr.async_get(hass)
    entities = er.async_get(hass)
    for entity_id, entity_area, device_name, device_class, unit in HOME_ENTITIES:
        domain, object_id = entity_id.split(".")
        device = devices.async_get_or_create(
            config_entry_id=source.entry_id,
            identifiers={("demo", device_name)},
            name=device_name,
            manufacturer="Acme",
            model="Home 1",
        )
        if entity_area is not None:
            devices.async_update_device(device.id, area_id=area_ids[entity_area])
        entities.async_get_or_create(
            domain,
            "demo",
            object_id,
            device_id=device.id,
            original_device_class=device_class,
            unit_of_measurement=unit,
            suggested_object_id=object_id,
        )


def _attributes(entity_id: str) -> dict[str, Any]:
    for known, _, device, device_class, unit in HOME_ENTITIES:
        if known == entity_id:
            attributes: dict[str, Any] = {"friendly_name": device}
            if device_class:
                attributes["device_class"] = device_class
            if unit:
                attributes["unit_of_measurement"] = unit
            return attributes
    raise KeyError(entity_id)


async def record_home(
    hass: HomeAssistant, server: InfluxDB1Server, **options: Any
) -> RecordedHome:
    """Record two and a half days of a small home through the real pipeline.

    Starts at midnight UTC three days ago, so every point is in the past (1.x ends
    a GROUP BY time() query at now()) and within ``now() - 7d``; states carry
    their own timestamps, so the clock need not move. Users Alice and Bob and the
    automation ``automation.evening_lights`` switch the kitchen light; the plugs
    report power and a growing energy total every 30 minutes; the bedroom
    temperature has a three-hour gap; the outdoor temperature rides along on
    every point as context.
    """
    start = (datetime.now(UTC) - timedelta(days=3)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    alice = await hass.auth.async_create_user("Alice")
    bob = await hass.auth.async_create_user("Bob")
    _register_home(hass)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="home",
        unique_id=f"{server.url}|home",
        data=server.entry_data(),
        options={
            "event_types": ["state_changed", "automation_triggered"],
            "context_entities": [OUTDOOR],
        }
        | options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()

    users = {"alice": alice.id, "bob": bob.id}
    for offset, entity_id, state, who in home_timeline():
        timestamp = (start + offset).timestamp()
        context = None
        if who == "automation":
            context = Context()
            hass.bus.async_fire(
                "automation_triggered",
                {"entity_id": AUTOMATION, "name": "Evening lights"},
                context=context,
                time_fired=timestamp,
            )
        elif who is not None:
            context = Context(user_id=users[who])
        hass.states.async_set(
            entity_id,
            state,
            _attributes(entity_id),
            context=context,
            timestamp=timestamp,
        )
        if entity_id == OUTDOOR:
            # Older Home Assistant tells the context tracker a loop turn later.
            await hass.async_block_till_done()
    await hass.async_block_till_done()
    assert await entry.runtime_data.pipeline.async_flush()
    return RecordedHome(entry=entry, start=start, end=start + LAST)


def home_timeline() -> list[tuple[timedelta, str, str, str | None]]:
    """(offset from the start, entity id, state, who) in time order; who is a
    user, ``automation`` or nobody."""
    timeline: list[tuple[timedelta, str, str, str | None]] = [
        (timedelta(0), entity_id, "off", None)
        for entity_id in (
            "light.kitchen",
            "switch.coffee_maker",
            "binary_sensor.hall_motion",
        )
    ]
    timeline += [
        (timedelta(hours=7), "light.kitchen", "on", "alice"),
        (timedelta(hours=8, minutes=30), "light.kitchen", "off", "alice"),
        (timedelta(hours=7, minutes=5), "switch.coffee_maker", "on", "bob"),
        (timedelta(hours=7, minutes=20), "switch.coffee_maker", "off", None),
        (timedelta(days=1, hours=18), "light.kitchen", "on", "automation"),
        (timedelta(days=1, hours=20), "light.kitchen", "off", "bob"),
        (timedelta(days=1, hours=23, minutes=30), "light.kitchen", "on", "alice"),
        (timedelta(days=2, minutes=30), "light.kitchen", "off", "alice"),
        (timedelta(days=2, hours=7), "binary_sensor.hall_motion", "on", None),
        (
            timedelta(days=2, hours=7, minutes=2),
            "binary_sensor.hall_motion",
            "off",
            None,
        ),
    ]
    kitchen_kwh = bedroom_kwh = 0.0
    for step in range(STEPS):
        offset = timedelta(minutes=30 * step)
        hour = (step // 2) % 24
        kitchen_w = (1500.0 if hour in (7, 12, 19) else 40.0) + step % 3
        bedroom_w = (300.0 if hour in (21, 22) else 10.0) + step % 2
        kitchen_kwh += kitchen_w / 2000
        bedroom_kwh += bedroom_w / 2000
        timeline += [
            (offset, OUTDOOR, f"{5 + hour / 2:.1f}", None),
            (offset, "sensor.kitchen_power", f"{kitchen_w:.1f}", None),
            (offset, "sensor.bedroom_power", f"{bedroom_w:.1f}", None),
            (offset, "sensor.kitchen_energy", f"{kitchen_kwh:.3f}", None),
            (offset, "sensor.bedroom_energy", f"{bedroom_kwh:.3f}", None),
        ]
        if offset == GAP[0]:
            timeline.append((offset, "sensor.bedroom_temperature", "unavailable", None))
        elif not GAP[0] < offset < GAP[1]:
            timeline.append(
                (offset, "sensor.bedroom_temperature", f"{19 + hour / 10:.1f}", None)
            )
    timeline.sort(key=lambda item: item[0])
    return timeline


DASHBOARDS = Path(__file__).parent.parent / "dashboards" / "grafana"
DASHBOARD_FILES = ("home_overview.json", "ha_ingestor_health.json")
DATASOURCE = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
# Grafana's own variables and InfluxQL macros; everything else is a template variable.
MACROS = ("timeFilter", "__interval", "interval")
GRID_COLUMNS = 24
# Selections of the home overview's variables: Grafana's default (All) and one
# area with one of its entities, as a user would pick them.
ALL = "$__all"
HOME_SELECTIONS: tuple[dict[str, str], ...] = (
    {"area": ALL, "entity": ALL},
    {"area": "Kitchen", "entity": "light.kitchen"},
)
# The tag each variable filters on, to check that a selection filters.
VARIABLE_TAGS = {"area": "area", "entity": "entity_id"}


@pytest.fixture
def platforms() -> list[Platform]:
    """The health entities are set up: the health dashboard reads their states."""
    return [Platform.SENSOR, Platform.BINARY_SENSOR]


@pytest.fixture
def all_entities_enabled() -> Iterator[None]:
    """Entities disabled by default (write latency) are created enabled."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


def _load(name: str) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return dashboard


def _panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _references(text: str) -> set[str]:
    """The names a query refers to as $name, ${name} or ${name:format}."""
    return {
        braced or plain
        for braced, plain in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", text)
    }


def _regex_escape(value: str) -> str:
    """Escape a value for an InfluxQL regex, as Grafana's InfluxDB data source does."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda match: "\\" + match[0], value)


def _interpolation(variable: Mapping[str, Any], chosen: str, values: list[str]) -> str:
    """What Grafana puts in a query for a variable: a multi-value or All variable
    goes in regex-escaped (several values as an alternation, All as ``allValue``
    when set); a single-value variable goes in as it is."""
    if not (variable.get("multi") or variable.get("includeAll")):
        return chosen
    if chosen == ALL:
        if variable.get("allValue"):
            return str(variable["allValue"])
        return "(" + "|".join(_regex_escape(value) for value in values) + ")"
    return _regex_escape(chosen)


def _render(query: str, rendered: Mapping[str, str], grafana: Mapping[str, str]) -> str:
    """The query as Grafana sends it, macros and variables filled in."""
    names = {**grafana, **rendered}

    def fill(match: re.Match[str]) -> str:
        # ${name:format} would need the raw values: the dashboards use none.
        assert match[2] is None, f"unsupported format in {query}"
        return names[match[1] or match[3]]

    text = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", fill, query)
    assert not _references(text), f"unfilled variable in {text}"
    return text


def _group_by_tags(query: str) -> set[str]:
    """The tags of the outermost GROUP BY: each series must carry them."""
    outer = query.rsplit("GROUP BY", 1)[1] if "GROUP BY" in query else ""
    if outer.count(")") > outer.count("("):  # the last GROUP BY is a subquery's
        return set()
    return set(re.findall(r'"(\w+)"', outer))


def _variable_values(
    server: InfluxDB1Server,
    variable: Mapping[str, Any],
    rendered: Mapping[str, str],
    grafana: Mapping[str, str],
) -> list[str]:
    """The values Grafana offers for a query variable: the tag values, through
    the variable's regex (its first group, when it has one)."""
    query = _render(variable["query"], rendered, grafana)
    values = {
        str(row[1])
        for series in server.query("home", query)
        for row in series["values"]
    }
    if pattern := variable.get("regex"):
        regex = re.compile(pattern.strip("/"))
        matched = (regex.search(value) for value in values)
        values = {
            (match[1] if regex.groups else match[0]) for match in matched if match
        }
    return sorted(values)


def _check_series(
    panel: Mapping[str, Any],
    target: Mapping[str, Any],
    query: str,
    series: list[dict[str, Any]],
    selection: Mapping[str, str],
) -> None:
    """A panel query's answer is what the panel draws: series with a time
    column, at least one value, the tags its GROUP BY and alias name, the
    columns its transformations use, and, where it uses a variable, only the
    selected tag values."""
    where = f"{panel['title']!r} ({target['refId']}): {query}"
    assert series, f"no series for {where}"
    assert all(item["columns"][0] == "time" for item in series), where
    assert any(
        value is not None
        for item in series
        for row in item["values"]
        for value in row[1:]
    ), f"only empty values for {where}"
    tags = _group_by_tags(query) | set(
        re.findall(r"\$tag_(\w+)", target.get("alias", ""))
    )
    for item in series:
        assert tags <= set(item.get("tags", {})), f"{where}: tags {item.get('tags')}"
    columns = {column for item in series for column in item["columns"]}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "groupBy":
            used = set(transformation["options"]["fields"])
            assert used <= columns, f"{where}: {used - columns} missing"
    for name, chosen in selection.items():
        tag = VARIABLE_TAGS.get(name)
        if chosen == ALL or tag is None or name not in _references(target["query"]):
            continue
        for item in series:
            value = item.get("tags", {}).get(tag)
            assert value in (None, chosen), f"{where}: {tag}={value}"


def _run_dashboard(
    server: InfluxDB1Server,
    dashboard: Mapping[str, Any],
    selection: Mapping[str, str],
    grafana: Mapping[str, str],
) -> dict[str, list[str]]:
    """Resolve the variables in order and run every panel query; return the
    values each variable offered."""
    rendered: dict[str, str] = {}
    offered: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        values = _variable_values(server, variable, rendered, grafana)
        name = variable["name"]
        assert values, f"variable {name} offers nothing"
        chosen = selection.get(name, values[0])
        assert chosen == ALL or chosen in values, (name, chosen, values)
        rendered[name] = _interpolation(variable, chosen, values)
        offered[name] = values
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            query = _render(target["query"], rendered, grafana)
            _check_series(panel, target, query, server.query("home", query), selection)
    return offered


def _grafana_macros(start: datetime, end: datetime, interval: str) -> dict[str, str]:
    """$timeFilter as Grafana expands it for an absolute range, and $__interval."""
    first = int(start.timestamp() * 1000)
    last = int(end.timestamp() * 1000)
    time_filter = f"time >= {first}ms and time <= {last}ms"
    return {"timeFilter": time_filter, "__interval": interval, "interval": interval}


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_importable_grafana_json(name: str) -> None:
    """Each file is a dashboard Grafana imports as it is: an InfluxDB data source
    input that every panel, query and variable uses, the plugins it requires,
    unique panel ids on a non-overlapping 24-column grid, raw InfluxQL queries,
    SHOW TAG VALUES variables, and no reference to an undefined variable."""
    dashboard = _load(name)
    for key in ("__inputs", "__requires", "panels", "templating", "time", "title"):
        assert dashboard[key], key
    assert isinstance(dashboard["schemaVersion"], int)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert {"from", "to"} <= set(dashboard["time"])
    assert dashboard["id"] is None
    [source] = dashboard["__inputs"]
    assert source == source | {
        "name": "DS_INFLUXDB",
        "type": "datasource",
        "pluginId": "influxdb",
    }
    required = {(item["type"], item["id"]) for item in dashboard["__requires"]}
    panels = _panels(dashboard)
    assert {("grafana", "grafana"), ("datasource", "influxdb")} <= required
    assert {("panel", panel["type"]) for panel in panels} <= required

    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y"))
        assert grid["h"] > 0
        assert grid["w"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area

    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["query"].startswith("SHOW TAG VALUES ")
        assert _references(variable["query"]) <= variables
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["rawQuery"] is True, panel["title"]
            assert target["query"].startswith("SELECT "), panel["title"]
            assert "$timeFilter" in target["query"], panel["title"]
            assert _references(target["query"]) <= variables | set(MACROS)


async def test_home_overview_panels_answer_from_the_real_pipeline(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Every variable of the home overview offers values and every panel query
    returns the series its panel draws, from what the real pipeline recorded —
    with every area and entity (Grafana's default) and with one area and one
    entity picked, which the panels then show alone."""
    home = await record_home(hass, influxdb_v1)
    grafana = _grafana_macros(
        home.start - timedelta(hours=1), home.end + timedelta(hours=1), "5m"
    )
    dashboard = _load("home_overview.json")
    for selection in HOME_SELECTIONS:
        offered = _run_dashboard(influxdb_v1, dashboard, selection, grafana)
    assert {"Kitchen", "Bedroom", "Hall"} <= set(offered["area"])
    assert offered["entity"] == [
        "light.kitchen",
        "sensor.kitchen_energy",
        "sensor.kitchen_power",
        "switch.coffee_maker",
    ]


async def _next_refresh(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Move time to the health coordinator's next refresh and let it finish."""
    freezer.tick(UPDATE_INTERVAL)
    async_fire_time_changed(hass)
    refreshes = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(f"{DOMAIN} health")
    ]
    if refreshes:
        await asyncio.wait(refreshes)
    await hass.async_block_till_done()


async def test_health_panels_answer_from_the_recorded_health_sensors(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    freezer: FrozenDateTimeFactory,
    all_entities_enabled: None,
) -> None:
    """The health dashboard's entry variable finds the entry's prefix from its
    recorded Points written sensor, and every panel query returns series from
    the health sensors' states that HA Ingestor recorded like any entity's."""
    began = datetime.now(UTC)
    await record_home(hass, influxdb_v1)
    for _ in range(4):
        await hass.services.async_call(DOMAIN, "flush", blocking=True)
        await _next_refresh(hass, freezer)
    await hass.services.async_call(DOMAIN, "flush", blocking=True)
    grafana = _grafana_macros(
        began - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=5), "10s"
    )
    offered = _run_dashboard(influxdb_v1, _load("ha_ingestor_health.json"), {}, grafana)
    assert offered == {"entry": ["home"]}

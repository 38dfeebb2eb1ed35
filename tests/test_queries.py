"""The query cookbook, docs/queries.md: every InfluxQL answer runs against a real
InfluxDB 1.x fed by the real pipeline and returns what the question asks; the
Flux and SQL versions, which nothing here can run, are checked to ask the same
of the same schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
import re
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from .servers import InfluxDB1Server
from .test_grafana import (
    AUTOMATION,
    HOME_ENTITIES,
    RecordedHome,
    home_timeline,
    record_home,
)

COOKBOOK = Path(__file__).parent.parent / "docs" / "queries.md"
LANGUAGES = ("influxql", "flux", "sql")

type Rows = list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Question:
    """One ``##`` section of the cookbook: its heading and a query per language."""

    heading: str
    blocks: dict[str, list[str]]

    def query(self, language: str) -> str:
        [query] = self.blocks[language]
        return query


def _questions() -> list[Question]:
    text = COOKBOOK.read_text()
    questions = []
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, body = section.split("\n", 1)
        blocks: dict[str, list[str]] = {}
        for language, code in re.findall(r"^```(\w+)\n(.*?)^```$", body, re.M | re.S):
            blocks.setdefault(language, []).append(code.strip())
        questions.append(Question(heading=heading.strip(), blocks=blocks))
    return questions


def _energy_used(area: str) -> float:
    """kWh the area's meters counted over the recording: last minus first reading."""
    meters = {
        entity_id
        for entity_id, meter_area, _, device_class, _ in HOME_ENTITIES
        if device_class == "energy" and meter_area == area
    }
    used = 0.0
    for meter in meters:
        readings = [float(state) for _, e, state, _ in home_timeline() if e == meter]
        used += readings[-1] - readings[0]
    return used


def _nanoseconds(home: RecordedHome, offset: timedelta) -> int:
    return int((home.start + offset).timestamp()) * 1_000_000_000


def _what_was_on(rows: Rows, home: RecordedHome) -> None:
    seen = {(row["entity_id"], row["state"]) for row in rows}
    assert {("light.kitchen", "on"), ("switch.coffee_maker", "on")} <= seen
    assert {row["user"] for row in rows} >= {"Alice", "Bob"}
    assert AUTOMATION in {row["automation"] for row in rows}


def _minutes_on(rows: Rows, home: RecordedHome) -> None:
    # 07:00-08:30; 18:00-20:00 and 23:30-24:00; 00:00-00:30 (split at midnight).
    assert [row["minutes_on"] for row in rows if row["minutes_on"]] == [90, 150, 30]


def _energy_per_area(rows: Rows, home: RecordedHome) -> None:
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["area"]] = totals.get(row["area"], 0.0) + (row["kwh"] or 0.0)
    assert totals.keys() == {"Kitchen", "Bedroom"}
    for area, kwh in totals.items():
        assert kwh == pytest.approx(_energy_used(area))


def _who(rows: Rows, home: RecordedHome) -> None:
    assert [(row["user"], row["automation"]) for row in rows] == [
        ("Alice", None),
        (None, AUTOMATION),
        ("Alice", None),
    ]
    assert all(len(row["context_id"]) == 26 for row in rows)


def _which_automation(rows: Rows, home: RecordedHome) -> None:
    assert [(row["state"], row["automation"]) for row in rows] == [("on", AUTOMATION)]


def _automation_runs(rows: Rows, home: RecordedHome) -> None:
    assert {row["entity_id"] for row in rows} == {AUTOMATION}
    assert sum(row["runs"] for row in rows) == 1


def _events_per_device(rows: Rows, home: RecordedHome) -> None:
    devices = {device for _, _, device, _, _ in HOME_ENTITIES}
    assert devices <= {row["device"] for row in rows}
    light = [row["events"] for row in rows if row["device"] == "Kitchen light"]
    assert sum(light) == 7


def _gaps(rows: Rows, home: RecordedHome) -> None:
    [gap] = rows
    assert gap["gap_minutes"] >= 180
    assert gap["time"] == _nanoseconds(home, timedelta(days=1, hours=5))


def _unavailable(rows: Rows, home: RecordedHome) -> None:
    assert [(row["time"], row["state"]) for row in rows] == [
        (_nanoseconds(home, timedelta(days=1, hours=2)), "unavailable")
    ]


def _last_seen(rows: Rows, home: RecordedHome) -> None:
    seen = {row["device"]: row["time"] for row in rows}
    assert {device for _, _, device, _, _ in HOME_ENTITIES} <= seen.keys()
    assert seen["Kitchen light"] == _nanoseconds(home, timedelta(days=2, minutes=30))


def _outdoor_temperature(rows: Rows, home: RecordedHome) -> None:
    assert len(rows) == 3
    assert all(row["state"] == "on" for row in rows)
    assert all(row["ctx_sensor_outdoor_temperature"] is not None for row in rows)


# What each question's InfluxQL must answer from the home record_home records.
EXPECTED: dict[str, Callable[[Rows, RecordedHome], None]] = {
    "What was on when": _what_was_on,
    "How long was a light on per day": _minutes_on,
    "Energy per area per week": _energy_per_area,
    "Who turned it on": _who,
    "Which automation caused it": _which_automation,
    "How often did each automation run": _automation_runs,
    "Events per device": _events_per_device,
    "Gaps in a sensor's readings": _gaps,
    "When was a sensor unavailable": _unavailable,
    "Last seen per device": _last_seen,
    "The outdoor temperature when the light went on": _outdoor_temperature,
}


def test_every_question_has_influxql_flux_and_sql() -> None:
    """Each question of the cookbook answers in exactly one InfluxQL, one Flux
    and one SQL block, and each has an expectation here (so none goes untested)."""
    questions = _questions()
    assert [question.heading for question in questions] == list(EXPECTED)
    for question in questions:
        assert sorted(question.blocks) == sorted(LANGUAGES), question.heading
        assert all(len(blocks) == 1 for blocks in question.blocks.values())


def _balanced(code: str) -> bool:
    text = re.sub(r"'[^']*'|\"[^\"]*\"|--[^\n]*", "", code)
    if "'" in text or '"' in text:
        return False
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


@pytest.mark.parametrize(
    "question", _questions(), ids=lambda question: question.heading
)
def test_flux_and_sql_ask_what_the_influxql_asks(question: Question) -> None:
    """The Flux and SQL versions (not runnable here) read the same measurements
    over the same days, filter on the same values and use the same tags and
    fields as the tested InfluxQL, and their brackets and quotes balance."""
    influxql = question.query("influxql")
    flux = question.query("flux")
    sql = question.query("sql")
    assert flux.startswith('from(bucket: "home")')
    assert re.search(r"\|> range\(start: -\d+d\)", flux)
    assert "|> filter(fn: (r) =>" in flux
    assert re.search(r"\bSELECT\b.*\bFROM\b", sql, re.S)
    for code in (influxql, flux, sql):
        assert _balanced(code), code

    [days] = re.findall(r"now\(\) - (\d+)d", influxql)[-1:]
    assert f"range(start: -{days}d)" in flux
    assert f"INTERVAL '{days} days'" in sql
    measurements = [
        name
        for names in re.findall(r'FROM ("\w+"(?:, "\w+")*)', influxql)
        for name in re.findall(r'"(\w+)"', names)
    ]
    for measurement in measurements:
        assert f'r._measurement == "{measurement}"' in flux, measurement
        assert re.search(rf"\bFROM {measurement}\b", sql), measurement
    aliases = set(re.findall(r'AS "(\w+)"', influxql))
    for name in set(re.findall(r'"(\w+)"', influxql)) - aliases - set(measurements):
        assert f"r.{name}" in flux or f'"{name}"' in flux, name
        assert re.search(rf"\b{name}\b", sql), name
    for literal in re.findall(r"'([^']+)'", influxql):
        assert f'"{literal}"' in flux, literal
        assert f"'{literal}'" in sql, literal


async def test_every_influxql_answer_holds_on_a_real_influxdb_1x(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Each cookbook InfluxQL query runs on InfluxDB 1.x over what the real
    pipeline recorded of a home and gives the answer the question asks for:
    minutes on per day, kWh per area, who and which automation, gaps,
    outages, last seen, the outdoor temperature of the moment."""
    home = await record_home(hass, influxdb_v1)
    for question in _questions():
        query = question.query("influxql")
        try:
            rows = influxdb_v1.rows("home", query)
        except RuntimeError as err:
            raise AssertionError(f"{question.heading}: {err}") from err
        assert rows, f"{question.heading}: no rows for {query}"
        try:
            EXPECTED[question.heading](rows, home)
        except AssertionError as err:
            raise AssertionError(f"{question.heading}: {err}\n{rows}") from err

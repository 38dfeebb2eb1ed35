"""Service actions answer per entry, keyed by the title a user sees."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def _setup(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB, *titles: str
) -> list[MockConfigEntry]:
    entries = []
    for number, title in enumerate(titles):
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=title,
            unique_id=str(number),
            data=fake_influxdb.v3_entry_data(),
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        entries.append(entry)
    await hass.async_block_till_done()
    return entries


@pytest.mark.parametrize(
    ("service", "key", "value"),
    [
        ("flush", "written", True),
        ("retry_dead_letters", "retried", 0),
        ("purge_dead_letters", "purged", 0),
    ],
)
async def test_each_action_answers_by_entry_title(
    hass: HomeAssistant,
    fake_influxdb: FakeInfluxDB,
    service: str,
    key: str,
    value: object,
) -> None:
    """Every loaded entry answers under its title; given an entry id, only it."""
    home, cabin = await _setup(hass, fake_influxdb, "home @ db", "cabin @ db")
    response = await hass.services.async_call(
        DOMAIN, service, blocking=True, return_response=True
    )
    assert response == {key: {"home @ db": value, "cabin @ db": value}}
    response = await hass.services.async_call(
        DOMAIN,
        service,
        {"config_entry_id": cabin.entry_id},
        blocking=True,
        return_response=True,
    )
    assert response == {key: {"cabin @ db": value}}
    for entry in (home, cabin):
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_entries_titled_alike_are_told_apart_by_their_id(
    hass: HomeAssistant, fake_influxdb: FakeInfluxDB
) -> None:
    """Two entries with the same title (say, one database on two ports) each get
    their own answer: the title, then the entry id."""
    first, second = await _setup(hass, fake_influxdb, "home @ db", "home @ db")
    response = await hass.services.async_call(
        DOMAIN, "flush", blocking=True, return_response=True
    )
    assert response == {
        "written": {
            f"home @ db ({first.entry_id})": True,
            f"home @ db ({second.entry_id})": True,
        }
    }
    for entry in (first, second):
        assert await hass.config_entries.async_unload(entry.entry_id)

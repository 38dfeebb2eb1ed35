"""Property-based: whatever Home Assistant or an MQTT device throws at the pipeline,
it never raises into Home Assistant and the real InfluxDB 1.x accepts every line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from homeassistant.core import HomeAssistant
from hypothesis import given, settings, strategies as st
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor.const import DOMAIN

from .servers import InfluxDB1Server

EXAMPLES = 60

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**90), max_value=2**90),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.binary(max_size=50),
    st.datetimes(timezones=st.just(UTC)),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_attributes = st.dictionaries(st.text(min_size=1, max_size=30), _values, max_size=6)
_payloads = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda data: __import__("json").dumps(data).encode(),
        st.dictionaries(
            st.text(max_size=8),
            _scalars.filter(lambda v: not isinstance(v, (bytes, datetime))),
            max_size=5,
        ),
    ),
)


async def test_hostile_states_events_and_payloads_all_land(
    hass: HomeAssistant, influxdb_v1: InfluxDB1Server
) -> None:
    """Random attributes (nested, bytes, NaN, inf, 2**80, datetimes, None), state
    texts, event data and MQTT payloads (binary, invalid UTF-8 and JSON, and one
    of 1 MB): nothing raises, nothing is refused by the real server."""
    examples: list[tuple[str, dict[str, Any], bytes]] = []

    @settings(max_examples=EXAMPLES, database=None, deadline=None)
    @given(state=st.text(max_size=255), attributes=_attributes, payload=_payloads)
    def collect(state: str, attributes: dict[str, Any], payload: bytes) -> None:
        examples.append((state, attributes, payload))

    collect()
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="hostile",
        data=influxdb_v1.entry_data(),
        options={
            "event_types": ["state_changed", "hostile"],
            # Keep every attribute: text ones become <name>_str fields.
            "attributes_include": sorted({k for _, a, _ in examples for k in a}),
            "mqtt_max_payload": 1_048_576,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    builder = entry.runtime_data.capture._builder
    pipeline = entry.runtime_data.pipeline
    examples.append(("big", {}, b"\xff" + b"x" * 1_048_576))
    for number, (state, attributes, payload) in enumerate(examples):
        hass.states.async_set(f"sensor.hostile_{number}", state, attributes)
        hass.bus.async_fire("hostile", {"attributes": attributes, "state": state})
        line, _ = builder.mqtt_line(
            f"hostile/{number}", payload, 1_700_000_000.0 + number
        )
        assert line is not None
        pipeline.add(line)
    await hass.async_block_till_done()
    assert await pipeline.async_flush()
    stats = entry.runtime_data.stats
    assert (stats.invalid, stats.rejected_points) == (0, 0)
    assert stats.points_written == 3 * len(examples)

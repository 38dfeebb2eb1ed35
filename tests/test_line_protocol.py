"""The line-protocol encoder: exact output, and what the real servers store.

The hostile corpus and the property tests write to the real InfluxDB 1.6.7 and to
VictoriaMetrics (InfluxDB v2 write API) and read back what they stored; the 2.x/3
syntax is also checked with a small parser written from the documented grammar (and
with the fake 2.x/3 server's parser where it applies).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from enum import IntEnum, StrEnum
import itertools
import math
import re
from typing import Any
import urllib.error
import urllib.request

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ha_ingestor.line_protocol import (
    EMPTY_MEASUREMENT,
    MAX_STRING_BYTES,
    MAX_TAG_VALUE_BYTES,
    LineEncoder,
    elide_field_values,
)

from .fake_influxdb import parse_line as fake_parse_line
from .servers import InfluxDB1Server, VictoriaMetricsServer

T0 = 1_700_000_000_000_000_000
V1, V2, V3 = LineEncoder("1"), LineEncoder("2"), LineEncoder("3")


# -- helpers ---------------------------------------------------------------------


def _post(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body.encode("utf-8"), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _post_v1(
    server: InfluxDB1Server, database: str, lines: list[str]
) -> tuple[int, str]:
    """Write through /write as admin; the status and the answer."""
    credentials = f"{server.admin_user}:{server.admin_password}".encode()
    return _post(
        f"{server.url}/write?db={database}&precision=ns",
        "\n".join(lines),
        {"Authorization": "Basic " + base64.b64encode(credentials).decode()},
    )


def _write_v1(server: InfluxDB1Server, database: str, lines: list[str]) -> None:
    """Write through /write as admin; every line must be accepted (204)."""
    status, answer = _post_v1(server, database, lines)
    assert status == 204, (answer, lines)


def _write_vm(server: VictoriaMetricsServer, lines: list[str]) -> None:
    status, answer = _post(
        f"{server.url}/api/v2/write?org=home-org&bucket=home&precision=ns",
        "\n".join(lines),
        {},
    )
    assert status == 204, (answer, lines)


def _ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _column(server: InfluxDB1Server, database: str, query: str) -> list[Any]:
    """The first column of every row a SHOW query returns."""
    return [
        row[0] for series in server.query(database, query) for row in series["values"]
    ]


# -- unit tests: exact output ----------------------------------------------------


def test_series_key_sorts_tags_by_key_and_escapes_them() -> None:
    tags = {"zone": "b", "area": "Living Room", "a=b": "x,y", "entity_id": "s.t"}
    for encoder in (V1, V2, V3):
        assert encoder.series_key("°C", tags) == (
            r"°C,a\=b=x\,y,area=Living\ Room,entity_id=s.t,zone=b"
        )


def test_tags_that_are_none_or_empty_are_omitted() -> None:
    tags: dict[str, str | None] = {"a": None, "b": "", "c": "\\", "": "x", "d": "1"}
    for encoder in (V1, V2, V3):
        assert encoder.series_key("m", tags) == "m,d=1"
        assert encoder.series_key("m", {}) == "m"


def test_measurement_escapes_comma_and_space_but_not_equals_or_quotes() -> None:
    for encoder in (V1, V2, V3):
        assert encoder.series_key('a b,c=d"e', {}) == r'a\ b\,c=d"e'


def test_measurement_starting_with_hash_is_not_a_comment() -> None:
    for encoder in (V1, V2, V3):
        assert encoder.series_key("#", {}) == "\\#"
        assert encoder.stored_measurement("#count") == "\\#count"
        assert encoder.series_key(" #x", {}) == r"\ #x"


def test_reserved_and_empty_names_are_renamed() -> None:
    for encoder in (V1, V2, V3):
        assert encoder.stored_key("time") == "time_"
        assert encoder.stored_key("_field") == "ha_field"
        assert encoder.stored_key("_measurement") == "ha_measurement"
        assert encoder.stored_key("Time") == "Time"
        assert encoder.stored_key("") == ""
        assert encoder.stored_measurement("_internal") == "ha_internal"
        assert encoder.stored_measurement("") == EMPTY_MEASUREMENT
        assert encoder.stored_measurement("\\") == EMPTY_MEASUREMENT
        assert encoder.stored_measurement("time") == "time"
        assert encoder.fields({"time": 1, "_value": 2}) == "time_=1.0,ha_value=2.0"


def test_names_get_spaces_for_controls_and_keep_the_backslashes_they_can() -> None:
    name = 'a\\,b\\\\=c\\ d\\"e\\'
    for encoder in (V1, V2, V3):
        assert encoder.stored_key("a\tb\nc\x00d\x7f") == "a b c d "
        assert encoder.stored_measurement(name) == 'a,b=c d"e'
        assert encoder.stored_measurement("a\\b") == "a\\b"
    # 1.x keys: odd runs before "," "=" or space gain a backslash, even runs and
    # runs before a quote are kept, a trailing run is dropped.
    assert V1.stored_key(name) == 'a\\\\,b\\\\=c\\\\ d\\"e'
    assert V2.stored_key(name) == V3.stored_key(name) == 'a,b=c d"e'
    assert V1.stored_key("time\\") == "time_"
    assert V1.series_key("m", {"a\\\\b": "v"}) == "m,a\\\\b=v"
    assert V2.series_key("m", {"a\\\\b": "v"}) == "m,a\\\\\\b=v"
    assert V1.series_key("a\\\\b", {}) == "a\\\\b"
    assert V3.series_key("a\\\\b", {}) == "a\\\\\\b"


def test_tag_value_newline_becomes_a_space_and_tab_only_for_2_and_3() -> None:
    value = "a\nb\tc\rd\x00e"
    assert V1.stored_tag_value(value) == "a b\tc\rd\x00e"
    assert V2.stored_tag_value(value) == "a b c\rd\x00e"
    assert V1.series_key("m", {"t": value}) == "m,t=a\\ b\tc\rd\x00e"
    assert V3.series_key("m", {"t": value}) == "m,t=a\\ b\\ c\rd\x00e"


def test_trailing_backslashes_are_dropped() -> None:
    for encoder in (V1, V2, V3):
        assert encoder.stored_tag_value("C:\\temp\\\\") == "C:\\temp"
        assert encoder.series_key("m", {"t": "C:\\temp\\"}) == "m,t=C:\\temp"


def test_backslashes_in_tag_values_are_escaped_per_server_kind() -> None:
    # user value -> (line for 1.x, line for 2.x/3); both store the user value.
    cases = {
        "a\\b": ("a\\b", "a\\b"),
        "a\\\\b": ("a\\\\b", "a\\\\\\b"),
        "a\\,b": ("a\\\\,b", "a\\\\\\,b"),
        "a\\=b": ("a\\\\=b", "a\\\\\\=b"),
        "a\\ b": ("a\\\\ b", "a\\\\\\ b"),
        "a\\\\ b": ("a\\\\\\ b", "a\\\\\\\\\\ b"),
        'a\\"b': ('a\\"b', 'a\\"b'),
    }
    for value, (line_v1, line_v2) in cases.items():
        assert V1.series_key("m", {"t": value}) == f"m,t={line_v1}", value
        assert V2.series_key("m", {"t": value}) == f"m,t={line_v2}", value
        assert V1.stored_tag_value(value) == V2.stored_tag_value(value) == value


def test_1x_writes_tags_holding_an_odd_run_before_a_space_last() -> None:
    tags = {"area": "Hub \\ one", "device": "p\\=q", "entity_id": "s.t"}
    assert (
        V1.series_key("m", tags) == "m,device=p\\\\=q,entity_id=s.t,area=Hub\\ \\\\ one"
    )
    assert V2.series_key("m", tags) == (
        "m,area=Hub\\ \\\\\\ one,device=p\\\\\\=q,entity_id=s.t"
    )
    # Even runs before a space are no trouble: the tags stay sorted.
    assert V1.series_key("m", {"b": "x\\\\ y", "a": "p\\=q"}) == (
        "m,a=p\\\\=q,b=x\\\\\\ y"
    )


def test_1x_value_with_backslash_space_gains_one_before_comma_or_equals() -> None:
    # In a value with an odd run before a space, the odd runs before "," or "="
    # gain a backslash; the one before the space is kept.
    assert V1.stored_tag_value('a\\ b\\=c\\,d"e') == 'a\\ b\\\\=c\\\\,d"e'
    assert V1.stored_tag_value("a\\=b\\\\ c") == "a\\=b\\\\ c"
    assert V2.stored_tag_value('a\\ b\\=c\\,d"e') == 'a\\ b\\=c\\,d"e'


def test_keys_that_end_up_equal_keep_the_first_with_a_value() -> None:
    encoder = LineEncoder("2")
    assert encoder.series_key("m", {"a\n": "", "a\t": "1", "a ": "2"}) == r"m,a\ =1"
    assert encoder.fields({"time": math.nan, "time_": 1, "x": 2}) == "time_=1.0,x=2.0"
    assert encoder.fields({"time_": "s", "time": 1}) == 'time_="s"'
    assert encoder.fields({"b": True, "b\\": False}) == "b=true"


def test_numbers_are_always_written_as_floats() -> None:
    fields = {"i": 5, "n": -3, "f": 1.5, "e": 1e100, "z": -0.0, "t": 5e-324}
    assert V1.fields(fields) == "i=5.0,n=-3.0,f=1.5,e=1e+100,z=-0.0,t=5e-324"
    assert V2.fields({"big": 2**80, "neg": -(2**80)}) == (
        "big=1.2089258196146292e+24,neg=-1.2089258196146292e+24"
    )


def test_nan_infinity_and_ints_beyond_float_range_are_omitted() -> None:
    fields = {
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "huge": 2**1024,
        "nhuge": -(2**1024),
        "max": 2**1023,
        "ok": 1.0,
    }
    assert V1.fields(fields) == "max=8.98846567431158e+307,ok=1.0"


def test_booleans_are_written_as_true_and_false() -> None:
    assert V1.fields({"on": True, "off": False}) == "on=true,off=false"


def test_1x_field_keys_escape_quotes() -> None:
    # 1.x reads \" in a field key as a quote, so a backslash before one needs one.
    assert V1.fields({'a"b': 1, 'a\\"b': 2}) == 'a\\"b=1.0,a\\\\"b=2.0'
    assert V2.fields({'a"b': 1}) == 'a"b=1.0'


def test_string_fields_escape_quotes_and_backslashes() -> None:
    for encoder in (V1, V2, V3):
        assert encoder.fields({"s": 'say "hi" \\o/ ,= '}) == (
            's="say \\"hi\\" \\\\o/ ,= "'
        )
        assert encoder.fields({"s": "trailing\\", "e": ""}) == 's="trailing\\\\",e=""'


def test_string_newline_is_raw_for_1x_and_backslash_n_for_2x_and_3() -> None:
    assert V1.fields({"s": "a\nb\r\n"}) == 's="a\nb\r\n"'
    assert V2.fields({"s": "a\nb\r\n"}) == 's="a\\\\nb\r\\\\n"'
    assert V3.stored_string("a\nb") == "a\\nb"
    assert V1.stored_string("a\nb") == "a\nb"


def test_fields_without_an_encodable_value_give_no_line() -> None:
    fields = {"": 1.0, "n": None, "o": object(), "l": [1], "nan": math.nan}
    for encoder in (V1, V2, V3):
        assert encoder.fields(fields) == ""
        assert encoder.fields({}) == ""
        assert encoder.line("m", "", T0) is None
        assert encoder.line("m,t=1", "f=1.0", T0) == f"m,t=1 f=1.0 {T0}"


def test_subclasses_of_supported_types_are_written_as_their_base_type() -> None:
    class Level(IntEnum):
        HIGH = 3

    class Mode(StrEnum):
        AUTO = 'au"to'

    class Reading(float):
        def __repr__(self) -> str:
            return "Reading(...)"

    fields = {"level": Level.HIGH, "mode": Mode.AUTO, "r": Reading(2.5)}
    assert V1.fields(fields) == 'level=3.0,mode="au\\"to",r=2.5'
    assert V1.fields({"r": Reading("nan")}) == ""


def test_lone_surrogates_become_replacement_characters() -> None:
    bad = "x\udc80y\ud800"
    for encoder in (V1, V2, V3):
        key = encoder.series_key(bad, {bad: bad})
        fields = encoder.fields({bad: bad})
        line = encoder.line(key, fields, T0)
        assert line is not None
        line.encode("utf-8")  # must not raise
        assert "\udc80" not in line
        assert line.count("\ufffd") == 10


def test_long_values_are_cut_to_the_documented_byte_limits() -> None:
    assert V1.stored_tag_value("x" * 5000) == "x" * MAX_TAG_VALUE_BYTES
    # Cut at a character boundary: 4-byte emoji, 2-byte é.
    assert V1.stored_tag_value("🔥" * 300) == "🔥" * 256
    assert V2.stored_tag_value("a" + "é" * 600) == "a" + "é" * 511
    assert V1.stored_key("k" * 2000) == "k" * 1024
    assert V1.stored_string("s" * 70_000) == "s" * MAX_STRING_BYTES
    # 2.x/3 count the stored text ("\\n" per newline); the cut may leave a "\\".
    assert V2.stored_string("\n" * 40_000) == "\\n" * 32767 + "\\"
    assert V1.fields({"s": "é" * 40_000}) == 's="' + "é" * (MAX_STRING_BYTES // 2) + '"'
    assert V3.fields({"s": "\n" * 40_000}) == 's="' + "\\\\n" * 32767 + '\\\\"'
    # A value cut right after a backslash does not end in one.
    assert V1.stored_tag_value("x" * 1023 + "\\y") == "x" * 1023


def test_a_series_key_over_influxdb_limit_is_shortened() -> None:
    tags = {f"tag{i:02d}": "v" * 1000 + f"{i}" for i in range(70)}
    key = V1.series_key("m", tags)
    assert len(key.encode()) <= 65535
    assert key.startswith("m,tag00=" + "v" * 128 + ",tag01=")


def test_field_key_cache_stays_bounded_and_correct() -> None:
    encoder = LineEncoder("2")
    for i in range(10_000):
        assert encoder.fields({f"k {i}": i}) == f"k\\ {i}={float(i)!r}"
    assert len(encoder._field_keys) <= 4096


def test_unknown_api_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown InfluxDB API version"):
        LineEncoder("4")  # type: ignore[arg-type]


# -- the hostile corpus on the real servers --------------------------------------

HOSTILE: list[str] = [
    "plain",
    "with space",
    " leading space",
    "trailing space ",
    "   ",
    "a,b",
    "a=b",
    "=start",
    ",start",
    'say "hi"',
    '"',
    "'single'",
    "back\\slash",
    "double\\\\backslash",
    "trailing\\",
    "\\\\",
    "\\",
    "\\,",
    "\\=",
    "\\ x",
    "x\\\\ y",
    '\\"',
    "C:\\temp\\new folder\\",
    "line\nbreak",
    "\n",
    "cr\rhere",
    "crlf\r\n",
    "tab\there",
    "\t",
    "nul\x00byte",
    "bell\x07 esc\x1b[0m del\x7f",
    "#hash",
    "_underscore",
    "time",
    "ünïcödé",
    "日本語",
    "emoji 🏠🔥",
    "zero\u200bwidth",
    "rtl \u202eevil",
    "\ufeffbom",
    "nbsp\u00a0",
    "surrogate \udc80 \ud800",
    "",
    "x" * 2000,
    "é" * 700,
    "🔥" * 300,
    "true",
    "1i",
    '{"json": ["x", 1.5]}',
]

# What InfluxDB 1.x stores as the tag value (None: the tag is omitted); any value
# not listed is stored exactly as given.
V1_TAG_SUBSTITUTIONS: dict[str, str | None] = {
    "trailing\\": "trailing",
    "\\\\": None,
    "\\": None,
    "C:\\temp\\new folder\\": "C:\\temp\\new folder",
    "line\nbreak": "line break",
    "\n": " ",
    "crlf\r\n": "crlf\r ",
    "surrogate \udc80 \ud800": "surrogate \ufffd \ufffd",
    "": None,
    "x" * 2000: "x" * 1024,
    "é" * 700: "é" * 512,
    "🔥" * 300: "🔥" * 256,
}
# The same for 2.x/3 (checked on VictoriaMetrics and with the documented grammar).
V2_TAG_SUBSTITUTIONS: dict[str, str | None] = {
    **V1_TAG_SUBSTITUTIONS,
    "tab\there": "tab here",
    "\t": " ",
}
# String field values: 1.x stores every corpus string as given but for surrogates.
STRING_SUBSTITUTIONS = {"surrogate \udc80 \ud800": "surrogate \ufffd \ufffd"}


def _corpus_lines(encoder: LineEncoder, measurement: str) -> list[str]:
    lines = []
    for case, text in enumerate(HOSTILE):
        key = encoder.series_key(measurement, {"case": f"c{case:02d}", "t": text})
        fields = encoder.fields({"s": text, "n": case})
        line = encoder.line(key, fields, T0 + case)
        assert line is not None
        lines.append(line)
    return lines


def test_hostile_corpus_round_trips_through_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    _write_v1(influxdb_v1, "home", _corpus_lines(V1, "corpus"))

    rows = {
        row["case"]: row for row in influxdb_v1.rows("home", "SELECT * FROM corpus")
    }
    assert len(rows) == len(HOSTILE)
    for case, text in enumerate(HOSTILE):
        row = rows[f"c{case:02d}"]
        assert row["n"] == case
        assert row["t"] == V1_TAG_SUBSTITUTIONS.get(text, text), text
        assert row["s"] == STRING_SUBSTITUTIONS.get(text, text), text
        assert row["t"] == (V1.stored_tag_value(text) or None)
        assert row["s"] == V1.stored_string(text)


def test_tag_value_with_newline_is_stored_with_a_space(
    influxdb_v1: InfluxDB1Server,
) -> None:
    key = V1.series_key("nl", {"name": "Kitchen\nlight"})
    line = V1.line(key, V1.fields({"state": "on\noff"}), T0)
    assert line is not None
    _write_v1(influxdb_v1, "home", [line, V1.line("nl2", "f=1.0", T0) or ""])

    assert influxdb_v1.rows("home", "SELECT * FROM nl") == [
        {"time": T0, "name": "Kitchen light", "state": "on\noff"}
    ]
    assert influxdb_v1.rows("home", "SELECT * FROM nl2") == [{"time": T0, "f": 1}]


def test_hostile_names_are_stored_as_documented_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    names = [text for text in HOSTILE if len(text) < 100]
    lines = []
    for case, text in enumerate(names):
        lines.append(f"{V1.series_key(text, {})} n={case} {T0}")
        lines.append(f"{V1.series_key('tagkeys', {text: 'v'})} n={case} {T0 + case}")
        lines.append(
            f"tagkeys,case=c{case} {V1.fields({text: 1.0}) or 'empty=1'} {T0 + case}"
        )
    _write_v1(influxdb_v1, "home", lines)

    measurements = set(_column(influxdb_v1, "home", "SHOW MEASUREMENTS"))
    tag_keys = set(_column(influxdb_v1, "home", "SHOW TAG KEYS FROM tagkeys"))
    field_keys = set(_column(influxdb_v1, "home", "SHOW FIELD KEYS FROM tagkeys"))
    assert measurements == {V1.stored_measurement(text) for text in names} | {"tagkeys"}
    stored_keys = {V1.stored_key(text) for text in names} - {""}
    assert tag_keys == stored_keys | {"case"}
    assert field_keys == stored_keys | {"n", "empty"}
    # Spot checks of the documented renames.
    assert {"\\#hash", "ha_underscore", "time", EMPTY_MEASUREMENT} <= measurements
    assert {"time_", "ha_underscore", "trailing", 'say "hi"', "bell  esc [0m del "} <= (
        tag_keys
    )
    for text in names:
        rows = influxdb_v1.rows(
            "home", f"SELECT * FROM {_ident(V1.stored_measurement(text))}"
        )
        assert rows, text  # readable back through InfluxQL


# -- backslash runs on InfluxDB 1.x ----------------------------------------------

# (text, run length, delimiter): "a", 1-4 backslashes, then a delimiter and "b", or
# nothing (the run ends the text).
BACKSLASH_RUNS = [
    ("a" + "\\" * run + delimiter + ("b" if delimiter else ""), run, delimiter)
    for delimiter in (" ", ",", "=", '"', "")
    for run in range(1, 5)
]
# The string field of every line these tests write, and of its neighbours.
NEIGHBOUR_TEXT = 'k=v, x="y" \\ z\\\\ \\"\nend\\'


def _expected_1x_key(text: str, run: int, delimiter: str) -> str:
    """A key as 1.x must hold it: a trailing run dropped, an odd run before ","
    "=" or space one backslash longer, anything else as given."""
    if not delimiter:
        return "a"
    if run % 2 and delimiter in ",= ":
        return "a" + "\\" * (run + 1) + delimiter + "b"
    return text


def _first_cases() -> dict[str, int]:
    """Each 1.x stored key of ``BACKSLASH_RUNS`` and the first case that has it
    (an odd run gains the backslash that makes it equal the next case)."""
    first: dict[str, int] = {}
    for case, (text, _, _) in enumerate(BACKSLASH_RUNS):
        first.setdefault(V1.stored_key(text), case)
    return first


def _point(
    measurement: str,
    tags: Mapping[str, str],
    case: int,
    fields: Mapping[str, Any] | None = None,
) -> str:
    """A line whose fields would show a misread series key: a string holding
    "=", "," and quotes, and a field key with a quote after a backslash."""
    line = V1.line(
        V1.series_key(measurement, tags),
        V1.fields({**(fields or {}), "s": NEIGHBOUR_TEXT, 'q\\"k': 1.0, "n": case}),
        T0 + case,
    )
    assert line is not None
    return line


def _between_neighbours(lines: list[str]) -> list[str]:
    """The lines in one batch, each between two ``neighbour`` points."""
    batch = []
    for case, line in enumerate(lines):
        before, after = (
            _point("neighbour", {"case": f"c{case:02d}", "side": side}, case)
            for side in ("before", "after")
        )
        batch += [before, line, after]
    return batch


def _assert_neighbours_intact(server: InfluxDB1Server, count: int) -> None:
    rows = server.rows("home", "SELECT * FROM neighbour")
    assert sorted((row["case"], row["side"], row["s"], row["n"]) for row in rows) == [
        (f"c{case:02d}", side, NEIGHBOUR_TEXT, case)
        for case in range(count)
        for side in ("after", "before")
    ]


def _exact_v1(text: str, special: str) -> str:
    """``text`` escaped the way 1.x unescapes it, with nothing substituted."""
    for char in special:
        text = text.replace(char, "\\" + char)
    return text


def test_backslash_runs_in_tag_values_are_stored_as_given_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    """Alone or all in one series key; only a trailing run is dropped."""
    alone = [
        _point("runs", {"case": f"c{case:02d}", "t": text}, case)
        for case, (text, _, _) in enumerate(BACKSLASH_RUNS)
    ]
    together = _point(
        "together",
        {f"t{case:02d}": text for case, (text, _, _) in enumerate(BACKSLASH_RUNS)},
        0,
    )
    _write_v1(influxdb_v1, "home", _between_neighbours([*alone, together]))

    rows = {row["case"]: row for row in influxdb_v1.rows("home", "SELECT * FROM runs")}
    [row_together] = influxdb_v1.rows("home", "SELECT * FROM together")
    for case, (text, _, delimiter) in enumerate(BACKSLASH_RUNS):
        stored = rows[f"c{case:02d}"]["t"]
        assert stored == V1.stored_tag_value(text), text
        assert stored == (text if delimiter else "a"), text
        assert row_together[f"t{case:02d}"] == stored, text
        assert rows[f"c{case:02d}"]["s"] == NEIGHBOUR_TEXT
    _assert_neighbours_intact(influxdb_v1, len(alone) + 1)


def test_backslash_runs_in_tag_keys_are_stored_as_documented_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    alone = [
        _point("runs", {"case": f"c{case:02d}", text: "v"}, case)
        for case, (text, _, _) in enumerate(BACKSLASH_RUNS)
    ]
    together = _point(
        "together",
        {BACKSLASH_RUNS[case][0]: f"v{case}" for case in _first_cases().values()},
        0,
    )
    _write_v1(influxdb_v1, "home", _between_neighbours([*alone, together]))

    keys = set(_column(influxdb_v1, "home", "SHOW TAG KEYS FROM runs"))
    assert keys == {"case"} | {V1.stored_key(text) for text, _, _ in BACKSLASH_RUNS}
    for case, (text, run, delimiter) in enumerate(BACKSLASH_RUNS):
        key = V1.stored_key(text)
        assert key == _expected_1x_key(text, run, delimiter), text
        [row] = influxdb_v1.rows(
            "home", f"SELECT n, {_ident(key)} FROM runs WHERE \"case\" = 'c{case:02d}'"
        )
        assert (row["n"], row[key]) == (case, "v"), text
    [row_together] = influxdb_v1.rows("home", "SELECT * FROM together")
    for key, case in _first_cases().items():
        assert row_together[key] == f"v{case}", key
    _assert_neighbours_intact(influxdb_v1, len(alone) + 1)


def test_backslash_runs_in_field_keys_are_stored_as_documented_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    alone = [
        _point("runs", {"case": f"c{case:02d}"}, case, {text: float(case)})
        for case, (text, _, _) in enumerate(BACKSLASH_RUNS)
    ]
    together = _point(
        "together",
        {},
        0,
        {BACKSLASH_RUNS[case][0]: float(case) for case in _first_cases().values()},
    )
    _write_v1(influxdb_v1, "home", _between_neighbours([*alone, together]))

    keys = set(_column(influxdb_v1, "home", "SHOW FIELD KEYS FROM runs"))
    stored_keys = {V1.stored_key(text) for text, _, _ in BACKSLASH_RUNS}
    assert keys == stored_keys | {"s", 'q\\"k', "n"}
    for case, (text, run, delimiter) in enumerate(BACKSLASH_RUNS):
        key = V1.stored_key(text)
        assert key == _expected_1x_key(text, run, delimiter), text
        [row] = influxdb_v1.rows(
            "home", f"SELECT {_ident(key)} FROM runs WHERE \"case\" = 'c{case:02d}'"
        )
        assert row[key] == case, text
    [row_together] = influxdb_v1.rows("home", "SELECT * FROM together")
    for key, case in _first_cases().items():
        assert row_together[key] == case, key
    _assert_neighbours_intact(influxdb_v1, len(alone) + 1)


def test_backslash_runs_in_measurements_are_dropped_and_read_back_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
) -> None:
    lines = [
        _point(text, {"case": f"c{case:02d}"}, case)
        for case, (text, _, _) in enumerate(BACKSLASH_RUNS)
    ]
    _write_v1(influxdb_v1, "home", _between_neighbours(lines))

    names = {V1.stored_measurement(text) for text, _, _ in BACKSLASH_RUNS}
    assert set(_column(influxdb_v1, "home", "SHOW MEASUREMENTS")) == names | {
        "neighbour"
    }
    for case, (text, _, delimiter) in enumerate(BACKSLASH_RUNS):
        name = V1.stored_measurement(text)
        assert name == "a" + delimiter + ("b" if delimiter else ""), text
        rows = influxdb_v1.rows(
            "home", f"SELECT * FROM {_ident(name)} WHERE \"case\" = 'c{case:02d}'"
        )
        assert [row["n"] for row in rows] == [case], text
    _assert_neighbours_intact(influxdb_v1, len(lines))


def test_influxdb_1x_cannot_hold_the_backslashes_the_encoder_changes_in_names(
    influxdb_v1: InfluxDB1Server,
) -> None:
    """Written exactly (escaped the way 1.x unescapes): a measurement with a run
    before a delimiter is stored under a name SELECT cannot find, and a field key
    with an odd run before "," "=" or space, or any trailing run, is refused or
    stored as another key; a tag key or value ending in a backslash is refused."""
    for case, (text, run, delimiter) in enumerate(BACKSLASH_RUNS):
        status, _ = _post_v1(
            influxdb_v1, "home", [f"{_exact_v1(text, ', ')} n={case} {T0}"]
        )
        assert status == 400 or not influxdb_v1.rows(
            "home", f"SELECT * FROM {_ident(text)}"
        ), text

        measurement = f"fieldkey{case:02d}"
        key = _exact_v1(text, ',= "')
        status, _ = _post_v1(
            influxdb_v1, "home", [f'{measurement} {key}={case},s="x" {T0}']
        )
        keys = _column(influxdb_v1, "home", f"SHOW FIELD KEYS FROM {measurement}")
        if (run % 2 and delimiter in ",= ") or not delimiter:
            assert status == 400 or text not in keys, text
        else:
            assert (status, sorted(keys)) == (204, sorted([text, "s"])), text

        if not delimiter:
            for line in (
                f"tagkey,{_exact_v1(text, ',= ')}=v n=1 {T0}",
                f"tagvalue,t={_exact_v1(text, ',= ')} n=1 {T0}",
            ):
                assert _post_v1(influxdb_v1, "home", [line])[0] == 400, line


# Tags that, written exactly and sorted, make 1.x's line splitter read the next
# line as part of this one; and what the encoder stores instead.
DERAILING_TAGS = {
    "backslash space before backslash equals and a quote": (
        {"a": "Hub \\ one", "b": 'p\\=q"r'},
        {"s": "x=y"},
        {"a": "Hub \\ one", "b": 'p\\=q"r'},
    ),
    "backslash space before backslash comma": (
        {"a": "Hub \\ one", "b": "p\\,q"},
        {"s": "x=y"},
        {"a": "Hub \\ one", "b": "p\\,q"},
    ),
    "both in one value": (
        {"t": 'a\\ b\\=c"d'},
        {"s": "x=y"},
        {"t": 'a\\ b\\\\=c"d'},
    ),
    "backslash space in a tag key": (
        {"k\\ 1": "v"},
        {'q\\"k': 1.0},
        {"k\\\\ 1": "v"},
    ),
    "backslash comma in a tag key after backslash space": (
        {"a": "Hub \\ one", "b\\,c": "v"},
        {"s": "x=y"},
        {"a": "Hub \\ one", "b\\\\,c": "v"},
    ),
}


@pytest.mark.parametrize(
    ("tags", "fields", "stored"), DERAILING_TAGS.values(), ids=DERAILING_TAGS
)
def test_tags_that_would_derail_the_1x_line_splitter_keep_the_next_line(
    influxdb_v1: InfluxDB1Server,
    tags: dict[str, str],
    fields: dict[str, Any],
    stored: dict[str, str],
) -> None:
    field_set = V1.fields({**fields, "n": 1})
    exact = ",".join(
        f"{_exact_v1(key, ',= ')}={_exact_v1(value, ',= ')}"
        for key, value in sorted(tags.items())
    )
    status, _ = _post_v1(
        influxdb_v1, "home", [f"exact,{exact} {field_set} {T0}", f"following n=1 {T0}"]
    )
    assert status == 400
    assert not influxdb_v1.rows("home", "SELECT * FROM following")

    line = V1.line(V1.series_key("m", tags), field_set, T0)
    assert line is not None
    _write_v1(influxdb_v1, "home", _between_neighbours([line]))
    [row] = influxdb_v1.rows("home", "SELECT * FROM m")
    assert {key: row[key] for key in stored} == stored
    assert stored == {
        V1.stored_key(key): V1.stored_tag_value(value) for key, value in tags.items()
    }
    _assert_neighbours_intact(influxdb_v1, 1)


def test_issue_13_device_name_with_backslash_space_is_stored_as_named(
    influxdb_v1: InfluxDB1Server,
) -> None:
    tags = {"device": "Hub \\ one", "entity_id": "sensor.x"}
    line = V1.line(V1.series_key("sensor", tags), V1.fields({"s": "a=b,c d"}), T0)
    assert line == f'sensor,entity_id=sensor.x,device=Hub\\ \\\\ one s="a=b,c d" {T0}'
    _write_v1(influxdb_v1, "home", _between_neighbours([line]))

    [row] = influxdb_v1.rows("home", "SELECT * FROM sensor")
    assert row["device"] == V1.stored_tag_value("Hub \\ one") == "Hub \\ one"
    assert influxdb_v1.rows(
        "home", "SELECT * FROM sensor WHERE device = 'Hub \\\\ one'"
    ) == [row]
    _assert_neighbours_intact(influxdb_v1, 1)


def test_hostile_corpus_is_accepted_by_victoria_metrics(
    victoria_metrics_server: VictoriaMetricsServer, socket_enabled: None
) -> None:
    _write_vm(victoria_metrics_server, _corpus_lines(V2, "lp_corpus"))

    # VictoriaMetrics answers 204 even for lines it drops, so count what it stored.
    stored = {
        series["metric"]["case"]: series
        for series in victoria_metrics_server.export('{__name__="lp_corpus_n"}')
    }
    assert len(stored) == len(HOSTILE)
    for case, text in enumerate(HOSTILE):
        series = stored[f"c{case:02d}"]
        assert series["values"] == [case]
        assert series["metric"].get("t") == V2_TAG_SUBSTITUTIONS.get(text, text), text
        assert series["metric"].get("t") == (V2.stored_tag_value(text) or None)


# -- property tests --------------------------------------------------------------

HOSTILE_CHARS = [*"\\,= \"'\n\r\t\x00\x01\x7f#_", "\udc80", "\ud800", "é", "🔥"]
texts = st.text(st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters()), max_size=12)
values = st.one_of(
    texts,
    st.floats(),
    st.integers(),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, 2**80, -(2**80), 2**1024]),
)
tag_sets = st.dictionaries(texts, st.one_of(st.none(), texts), max_size=4)
field_sets = st.dictionaries(texts, values, min_size=1, max_size=4)


def _expected_tags(
    encoder: LineEncoder, tags: Mapping[str, str | None]
) -> dict[str, str]:
    expected: dict[str, str] = {}
    for key, value in tags.items():
        stored = encoder.stored_key(key)
        if (
            stored
            and stored not in expected
            and value is not None
            and (stored_value := encoder.stored_tag_value(value))
        ):
            expected[stored] = stored_value
    return expected


def _expected_fields(encoder: LineEncoder, fields: Mapping[str, Any]) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for key, value in fields.items():
        stored = encoder.stored_key(key)
        if not stored or stored in expected:
            continue
        if isinstance(value, bool | str):
            expected[stored] = (
                encoder.stored_string(value) if isinstance(value, str) else value
            )
        else:
            try:
                number = float(value)
            except OverflowError:
                continue
            if math.isfinite(number):
                expected[stored] = number
    return expected


_SPECIAL = {"measurement": ", \\", "key": ",= \\"}


def _parse_v2(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Parse one line by the documented 2.x/3 grammar, plus the limits of the Rust
    parser of InfluxDB 3 (tab and NUL are separators, no name ends in ``\\``)."""
    assert "\n" not in line, "the documented grammar has no newline in a value"
    assert line[0] not in "# \t", "a comment or leading whitespace"
    pos = 0

    def token(stops: str, escapable: str) -> str:
        nonlocal pos
        out = []
        while line[pos] not in stops:
            char = line[pos]
            assert char != "\t", "tab separates tokens for the Rust parser"
            if char == "\\" and pos + 1 < len(line) and line[pos + 1] in escapable:
                out.append(line[pos + 1])
                pos += 2
            else:
                out.append(char)
                pos += 1
        text = "".join(out)
        assert text, "empty token"
        assert not text.endswith("\\"), "ends with a backslash"
        return text

    measurement = token(", ", _SPECIAL["measurement"])
    assert "\x00" not in measurement
    tags = {}
    while line[pos] == ",":
        pos += 1
        key = token("=, ", _SPECIAL["key"])
        assert line[pos] == "="
        pos += 1
        tags[key] = token(", ", _SPECIAL["key"])
    assert line[pos] == " "
    pos += 1
    fields: dict[str, Any] = {}
    while True:
        key = token("=, ", _SPECIAL["key"])
        assert line[pos] == "="
        assert key not in fields
        pos += 1
        if line[pos] == '"':
            pos += 1
            out = []
            while line[pos] != '"':
                if line[pos] == "\\" and line[pos + 1] in '"\\':
                    pos += 1
                out.append(line[pos])
                pos += 1
            pos += 1
            fields[key] = "".join(out)
        else:
            match = re.compile(
                r"true|false|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?=[, ])"
            ).match(line, pos)
            assert match, line[pos:]
            text = match.group()
            fields[key] = text == "true" if text in ("true", "false") else float(text)
            pos = match.end()
        if line[pos] == " ":
            break
        assert line[pos] == ","
        pos += 1
    timestamp = line[pos + 1 :]
    assert re.fullmatch(r"-?\d+", timestamp), timestamp
    for name in (measurement, *tags, *fields):
        assert not name.startswith("_"), "the _ namespace is reserved"
    assert "time" not in tags
    assert "time" not in fields
    return measurement, tags, fields, int(timestamp)


@settings(max_examples=300, deadline=None)
@given(measurement=texts, tags=tag_sets, fields=field_sets)
def test_lines_parse_back_by_the_documented_2x_3_grammar(
    measurement: str, tags: dict[str, str | None], fields: dict[str, Any]
) -> None:
    for encoder in (V2, V3):
        line = encoder.line(
            encoder.series_key(measurement, tags), encoder.fields(fields), T0
        )
        expected_fields = _expected_fields(encoder, fields)
        if not expected_fields:
            assert line is None
            continue
        assert line is not None
        line.encode("utf-8")
        expected = (
            encoder.stored_measurement(measurement),
            _expected_tags(encoder, tags),
            expected_fields,
            T0,
        )
        assert _parse_v2(line) == expected
        # The fake 2.x/3 server's parser toggles its quote state on any '"' and
        # splits a key at an escaped "=", so it only reads lines without those.
        keys = [*expected[1], *expected[2]]
        strings = [expected[0], *keys, *expected[1].values()]
        if not any('"' in text for text in strings) and not any("=" in k for k in keys):
            point = fake_parse_line(line)
            assert (point.measurement, point.tags, point.fields, point.time_ns) == (
                expected
            )


_databases = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    measurement=texts,
    tags=tag_sets,
    fields=field_sets,
    probe_tag=texts,
    probe_string=texts,
)
def test_lines_are_accepted_and_read_back_by_influxdb_1x(
    influxdb_v1: InfluxDB1Server,
    measurement: str,
    tags: dict[str, str | None],
    fields: dict[str, Any],
    probe_tag: str,
    probe_string: str,
) -> None:
    # A database per example: a field keeps its first type within a measurement.
    database = f"prop{next(_databases)}"
    influxdb_v1.create_database(database)
    try:
        probe = V1.line(
            V1.series_key("probe_x9", {"t": probe_tag}),
            V1.fields({"s": probe_string, "n": 1}),
            T0,
        )
        assert probe is not None
        line = V1.line(V1.series_key(measurement, tags), V1.fields(fields), T0)
        _write_v1(influxdb_v1, database, [probe] if line is None else [line, probe])

        [row] = influxdb_v1.rows(database, "SELECT * FROM probe_x9")
        assert row.get("t") == (V1.stored_tag_value(probe_tag) or None)
        assert row["s"] == V1.stored_string(probe_string)
        expected_fields = _expected_fields(V1, fields)
        if line is None:
            assert not expected_fields
            return
        name = V1.stored_measurement(measurement)
        assert name in _column(influxdb_v1, database, "SHOW MEASUREMENTS")
        if name == "probe_x9":
            return
        expected_tags = _expected_tags(V1, tags)
        [row] = influxdb_v1.rows(database, f"SELECT * FROM {_ident(name)}")
        for key, value in expected_fields.items():
            if key not in expected_tags:
                # 1.x prints 3.7e16 as 37294154543991660, which JSON reads as an int.
                stored = float(row[key]) if type(value) is float else row[key]
                assert stored == value, key
        for key, value in expected_tags.items():
            if key not in expected_fields:
                assert row[key] == value, key
        assert set(
            _column(influxdb_v1, database, f"SHOW TAG KEYS FROM {_ident(name)}")
        ) == set(expected_tags)
    finally:
        influxdb_v1.drop_database(database)


# -- eliding field values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "elided"),
    [
        (
            'sensor,entity_id=sensor.x value=21.5,state="21.5" 1700000000000000000',
            "sensor,entity_id=sensor.x value=…,state=… 1700000000000000000",
        ),
        ('m s="a, b=c \\"q\\" \\\\"', "m s=…"),
        ('m s="line one\nline, two=2 3",n=1 17', "m s=…,n=… 17"),
        (
            "m\\ x,t\\ k=v\\,w fi\\=eld=true,i=-1 -5",
            "m\\ x,t\\ k=v\\,w fi\\=eld=…,i=… -5",
        ),
        ('m s=""', "m s=…"),
    ],
)
def test_elided_lines_keep_all_but_the_field_values(line: str, elided: str) -> None:
    """Measurement, tags, field keys and timestamp stay; every value, string or
    number, becomes an ellipsis."""
    assert elide_field_values(line) == elided


@pytest.mark.parametrize(
    ("line", "elided"),
    [
        ('m,t=1 s="unterminated 1', "m …"),
        ('m s="x\\', "m …"),
        ('m s="a"b', "m …"),
        ("m", "m …"),
        ("m,t=1", "m …"),
        ("m v=1 later", "m …"),
        ("m v=1 ", "m …"),
        ("m v=1\n", "m …"),
        ("m  v=1", "m …"),
        ("m v", "m …"),
        ("m =1", "m …"),
        ("m v=", "m …"),
        ("m v=1,", "m …"),
        ("m\\,x,t=1 v=", "m\\,x …"),
        ("", "…"),
        (" v=1", "…"),
    ],
)
def test_a_line_that_does_not_parse_is_elided_to_its_measurement(
    line: str, elided: str
) -> None:
    assert elide_field_values(line) == elided


@settings(max_examples=300, deadline=None)
@given(measurement=texts, tags=tag_sets, fields=field_sets)
def test_every_encoded_line_is_elided_to_its_keys(
    measurement: str, tags: dict[str, str | None], fields: dict[str, Any]
) -> None:
    """Whatever the encoder writes (strings with spaces, commas, quotes, backslashes
    and, for 1.x, raw newlines), eliding keeps the series key, the escaped field
    keys and the timestamp."""
    for encoder in (V1, V2, V3):
        series = encoder.series_key(measurement, tags)
        line = encoder.line(series, encoder.fields(fields), T0)
        if line is None:
            continue
        keys = [
            encoder.fields({key: True}).removesuffix("=true")
            for key in _expected_fields(encoder, fields)
        ]
        field_set = ",".join(f"{key}=…" for key in keys)
        assert elide_field_values(line) == f"{series} {field_set} {T0}"
        assert (
            elide_field_values(line.removesuffix(f" {T0}")) == f"{series} {field_set}"
        )

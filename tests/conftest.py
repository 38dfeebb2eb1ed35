"""Fixtures shared by the HA Ingestor tests: real servers and a configured entry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
import shutil
from unittest.mock import patch

from homeassistant.const import Platform
import pytest
from pytest_homeassistant_custom_component.common import get_test_config_dir
import pytest_socket

from custom_components.ha_ingestor.const import DOMAIN

from .fake_influxdb import FakeInfluxDB
from .servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/ha_ingestor in every test."""


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """Each test gets its own config dir: spools never leak between tests, or
    between test runs on the same machine."""
    return hass_tmp_config_dir


@pytest.fixture(autouse=True)
def remove_shared_spools(request: pytest.FixtureRequest) -> Iterator[None]:
    """The minimum version's harness has no per-test config dir: delete what a
    test spooled in its shared one."""
    yield
    if "hass" in request.fixturenames:
        hass = request.getfixturevalue("hass")
        if hass.config.config_dir == get_test_config_dir():
            shutil.rmtree(hass.config.path(".storage", DOMAIN), ignore_errors=True)


@pytest.fixture
def platforms() -> list[Platform]:
    """No health entities unless a test asks for them: their own states would
    land in InfluxDB beside the points a test counts."""
    return []


@pytest.fixture(autouse=True)
def only_platforms(platforms: list[Platform]) -> Iterator[None]:
    """Set up only the platforms the test's ``platforms`` fixture names."""
    with patch("custom_components.ha_ingestor.PLATFORMS", platforms):
        yield


@pytest.fixture
def topology() -> bool:
    """No ``ha_topology`` points unless a test asks for them: one per entity
    would land in InfluxDB beside the points a test counts."""
    return False


@pytest.fixture(autouse=True)
def only_topology(topology: bool) -> Iterator[None]:
    """Write the topology only where the test's ``topology`` fixture says so."""
    if topology:
        yield
        return
    with patch("custom_components.ha_ingestor.topology.TopologyWriter.write"):
        yield


@contextmanager
def _sockets_allowed() -> Iterator[None]:
    """Let a session fixture talk to the server it starts.

    Session fixtures are set up before a test's ``socket_enabled`` fixture, while the
    harness still blocks sockets; they are blocked again afterwards.
    """
    pytest_socket.enable_socket()
    try:
        yield
    finally:
        pytest_socket.disable_socket(allow_unix_socket=True)


@pytest.fixture(scope="session")
def influxdb_v1_server() -> Iterator[InfluxDB1Server]:
    """The real InfluxDB 1.x server, shared by the whole run."""
    with _sockets_allowed():
        server = InfluxDB1Server().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def victoria_metrics_server() -> Iterator[VictoriaMetricsServer]:
    """The real VictoriaMetrics server (InfluxDB v2 write API)."""
    with _sockets_allowed():
        server = VictoriaMetricsServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mosquitto_server() -> Iterator[MosquittoServer]:
    """The real Mosquitto broker."""
    with _sockets_allowed():
        server = MosquittoServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def influxdb_v1(
    influxdb_v1_server: InfluxDB1Server, socket_enabled: None
) -> Iterator[InfluxDB1Server]:
    """The InfluxDB 1.x server with sockets allowed and a fresh ``home`` database."""
    influxdb_v1_server.create_database("home")
    try:
        yield influxdb_v1_server
    finally:
        if influxdb_v1_server.running:
            influxdb_v1_server.drop_database("home")


@pytest.fixture
async def fake_influxdb(socket_enabled: None) -> AsyncIterator[FakeInfluxDB]:
    """The faithful InfluxDB 2.x/3 fake: token ``good-token``, org ``home-org``,
    bucket and v3 database ``home``."""
    fake = FakeInfluxDB()
    fake.tokens.add("good-token")
    fake.orgs["home-org"] = {"home"}
    fake.databases.add("home")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def private_influxdb_v1(socket_enabled: None) -> Iterator[InfluxDB1Server]:
    """An InfluxDB 1.x server of the test's own, which it may stop and restart."""
    server = InfluxDB1Server().start()
    server.create_database("home")
    try:
        yield server
    finally:
        server.cleanup()

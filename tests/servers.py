"""Real database and broker servers for the tests, each on a free 127.0.0.1 port.

Every server keeps its state in a temporary directory and is stopped by its pid at the
end of the run. ``Popen.wait()`` reaps the child: on this kind of machine ``kill -0``
still succeeds on a zombie for a second or two.
"""

from __future__ import annotations

import base64
import getpass
import json
from pathlib import Path
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from typing import Any, Self
import urllib.error
import urllib.parse
import urllib.request

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=data, method=method, headers=headers or {}
    )
    # The tests' own helper calls trust the test server's self-signed certificate.
    context = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class _Server:
    """A server process owned by the test run."""

    name = "server"
    startup_timeout = STARTUP_TIMEOUT
    stop_timeout = 15.0

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ha_ingestor_{self.name}_"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.tmp / "server.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        """Start the process and wait until it answers."""
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited: {self._log.read_text()[-2000:]}"
                )
            try:
                if self._ready():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready")

    def stop(self) -> None:
        """Stop the process by its pid and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class InfluxDB1Server(_Server):
    """Debian's ``influxd`` 1.x (v1 API only), with authentication enabled."""

    name = "influxdb"
    admin_user = "admin"
    admin_password = "test-admin-secret"

    def entry_data(self, database: str = "home") -> dict[str, Any]:
        """Config entry data for this server's 1.x API, as the admin user."""
        return {
            "api_version": "1",
            "url": self.url,
            "database": database,
            "username": self.admin_user,
            "password": self.admin_password,
            "verify_ssl": True,
        }

    def __init__(
        self, certificate: Path | None = None, key: Path | None = None
    ) -> None:
        super().__init__()
        self._bind_port = free_port()
        self._scheme = "https" if certificate else "http"
        https = (
            f'  https-enabled = true\n  https-certificate = "{certificate}"\n'
            f'  https-private-key = "{key}"\n'
            if certificate
            else ""
        )
        config = self.tmp / "influxdb.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self._bind_port}"
[meta]
  dir = "{self.tmp}/meta"
[data]
  dir = "{self.tmp}/data"
  wal-dir = "{self.tmp}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = true
  log-enabled = false
{https}[monitor]
  store-enabled = false
"""
        )
        self._config = config
        self._admin_created = False

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return ["influxd", "run", "-config", str(self._config)]

    def _ready(self) -> bool:
        status, _ = _http("GET", f"{self.url}/ping")
        if status != 204:
            return False
        if not self._admin_created:
            # The first user may be created without credentials while none exist.
            self._query(
                f"CREATE USER {self.admin_user} WITH PASSWORD "
                f"'{self.admin_password}' WITH ALL PRIVILEGES",
                auth=False,
            )
            self._admin_created = True
        return True

    def _query(
        self, query: str, database: str | None = None, *, auth: bool = True
    ) -> dict:  # type: ignore[type-arg]
        params = {"q": query, "epoch": "ns"}
        if database:
            params["db"] = database
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth:
            # influxd reads credentials from the URL or basic auth, not a form body.
            creds = f"{self.admin_user}:{self.admin_password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
        status, body = _http(
            "POST",
            f"{self.url}/query",
            urllib.parse.urlencode(params).encode(),
            headers,
        )
        if status != 200:
            raise RuntimeError(f"query failed ({status}): {body!r}")
        result: dict = json.loads(body)  # type: ignore[type-arg]
        return result

    def create_database(self, database: str) -> None:
        self._query(f'CREATE DATABASE "{database}"')

    def drop_database(self, database: str) -> None:
        self._query(f'DROP DATABASE "{database}"')

    def query(self, database: str, query: str) -> list[dict]:  # type: ignore[type-arg]
        """Run an InfluxQL query; return its series (possibly empty)."""
        result = self._query(query, database)["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        series: list[dict] = result.get("series", [])  # type: ignore[type-arg]
        return series

    def rows(self, database: str, query: str) -> list[dict]:  # type: ignore[type-arg]
        """Run a query and return every row as a column → value dict."""
        rows = []
        for series in self.query(database, query):
            tags = series.get("tags", {})
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(tags)
                rows.append(row)
        return rows


class VictoriaMetricsServer(_Server):
    """Debian's ``victoria-metrics``: speaks the InfluxDB v2 write API."""

    name = "victoriametrics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [
            "victoria-metrics",
            f"-storageDataPath={self.tmp}/data",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
        ]

    def _ready(self) -> bool:
        return _http("GET", f"{self.url}/health")[0] == 200

    def export(self, match: str) -> list[dict]:  # type: ignore[type-arg]
        """The stored series matching a selector, e.g. ``{__name__=~"m_.*"}``."""
        _http("GET", f"{self.url}/internal/force_flush")
        status, body = _http(
            "POST",
            f"{self.url}/api/v1/export",
            # An explicit range: the default end is "now", which can miss rows
            # written within the current second.
            urllib.parse.urlencode(
                {"match[]": match, "start": "0", "end": str(int(time.time()) + 3600)}
            ).encode(),
        )
        if status != 200:
            raise RuntimeError(f"export failed ({status}): {body!r}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]


class MosquittoServer(_Server):
    """Debian's ``mosquitto`` broker in the foreground."""

    name = "mosquitto"

    def __init__(self) -> None:
        super().__init__()
        self._config = self.tmp / "mosquitto.conf"
        self._config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"user {getpass.getuser()}\n"
            "max_queued_messages 0\n"
        )

    def _command(self) -> list[str]:
        return ["mosquitto", "-c", str(self._config)]

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

"""Start and stop real database / broker servers for the test suite.

Every server runs as a child process bound to 127.0.0.1 only, on ports that
were free when it was started, with all of its state inside a caller-supplied
directory (normally pytest's ``tmp_path``).  Nothing here touches the system
services or their default ports, so the tests can run next to a production
install and in parallel with each other.

The classes share a small interface (see :class:`ManagedServer`):

* ``start()`` / ``stop()`` / ``is_running()``; ``start()`` after ``stop()``
  restarts on the *same* port and data directory, so a test can simulate an
  outage and check that buffered data is delivered afterwards;
* ``host``, ``port``, ``pid``, ``data_dir``, ``log_path`` and ``log_tail()``;
* use as a context manager: ``with InfluxDB1Server(tmp_path) as db: ...``.

Only the standard library is used (``urllib`` for HTTP) so this module works
before any project dependency is installed.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, Self

__all__ = [
    "LOOPBACK",
    "HttpResponse",
    "InfluxDB1Server",
    "ManagedServer",
    "MosquittoServer",
    "TlsFiles",
    "VictoriaMetricsServer",
    "create_mosquitto_password_file",
    "free_port",
    "free_ports",
    "generate_tls_files",
    "http_request",
]

LOOPBACK = "127.0.0.1"

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_GRACE = 10.0
# Attempts for a *first* start only: a port chosen by free_port() can be taken
# by someone else before the server binds it.  Once a server has run, its port
# is pinned (restarts must reuse it), so a clash then is reported, not dodged.
_PORT_CLASH_ATTEMPTS = 3
_POLL_INTERVAL = 0.05

# urllib honours http_proxy/no_proxy from the environment; a CI proxy must
# never see (or break) requests to our loopback servers.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are currently free on 127.0.0.1.

    All sockets are held open until every port is chosen, otherwise the kernel
    may hand out the same port twice.  The ports are only *probably* free when
    the server binds them; callers retry on a clash (see ``ManagedServer``).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """Return one TCP port that is currently free on 127.0.0.1."""
    return free_ports(1)[0]


def _tcp_connectable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_ports_of(pid: int) -> set[int] | None:
    """IPv4 ports on which process ``pid`` itself holds a LISTEN socket.

    A successful TCP connect alone can be answered by whoever squats on the
    port while our server has just died with "address already in use", so on
    Linux we check socket ownership through /proc.  Returns None where /proc
    is not usable, and callers then fall back to the connect test.
    """
    try:
        inodes: set[str] = set()
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # fd closed while we were iterating
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        ports: set[int] = set()
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            # fields: sl local_address rem_address st ... uid timeout inode
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports
    except OSError:
        return None


class HttpResponse(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str]


def http_request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    """Perform an HTTP request without raising on 4xx/5xx status codes.

    Tests usually want to assert on the status, so HTTP errors are returned
    instead of raised; connection errors still raise ``OSError``.
    """
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, response.read(), dict(response.headers.items()))
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpResponse(exc.code, exc.read(), dict(exc.headers.items()))


# Servers still running at interpreter exit (a test crashed between start and
# stop, or someone forgot the context manager) are stopped here so that no
# orphan keeps a port or a temp dir busy.  Strong references on purpose: a
# server object that was dropped without stop() still owns a live process.
_LIVE_SERVERS: set[ManagedServer] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_LIVE_SERVERS):
        # Best effort: an exception here would only hide the test's result.
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------


class ManagedServer:
    """A server child process with its own data dir and loopback port(s).

    Subclasses define the command line, the files to write before each start
    and an optional protocol-level readiness probe.
    """

    #: Executable name looked up on PATH when no explicit binary is given.
    binary_name: str = ""
    #: File name of the server log inside ``data_dir``.
    log_name: str = "server.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = LOOPBACK
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        found = binary or shutil.which(self.binary_name)
        if found is None:
            raise RuntimeError(f"{self.binary_name!r} not found on PATH; is the package installed?")
        self.binary = found
        self.log_path = self.data_dir / self.log_name
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        # Set once the server has listened successfully; from then on every
        # restart must reuse the same ports, since clients were given them.
        self._ports_pinned = False
        self._ports = free_ports(self._port_count())

    @classmethod
    def is_available(cls) -> bool:
        """True if the server executable is on PATH (for ``pytest.mark.skipif``)."""
        return shutil.which(cls.binary_name) is not None

    # -- to be provided by subclasses ------------------------------------

    def _port_count(self) -> int:
        return 1

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files; called before every start with current ports."""

    def _probe_ready(self) -> bool:
        """Protocol-level readiness check, after all ports accept connections."""
        return True

    # -- public interface -------------------------------------------------

    @property
    def port(self) -> int:
        """The main port (HTTP for the databases, plain MQTT for Mosquitto)."""
        return self._ports[0]

    @property
    def pid(self) -> int:
        """PID of the running server process; RuntimeError if it is not running."""
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and block until it is ready; no-op if running."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._ports_pinned else _PORT_CLASH_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
            except _PortClashError:
                if attempt == attempts:
                    raise
                self._ports = free_ports(self._port_count())
                continue
            self._ports_pinned = True
            _LIVE_SERVERS.add(self)
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait ``stop_grace`` seconds, then SIGKILL.

        Only our own child is signalled (by its pid), never processes matched
        by name, so parallel test runs do not kill each other's servers.
        Graceful termination matters: it is what makes the databases flush
        their WAL / persistence file, which restart tests rely on.
        """
        process, self._process = self._process, None
        _LIVE_SERVERS.discard(self)
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self.stop_grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=self.stop_grace)
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def log_tail(self, max_lines: int = 40) -> str:
        """The last lines of the server log, for error messages."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log file>"
        return "\n".join(lines[-max_lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._process.pid}" if self.is_running() and self._process else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} dir={self.data_dir}>"

    # -- internals ----------------------------------------------------------

    def _spawn_and_wait(self) -> None:
        self._prepare()
        # Append so that the log of a restarted server still shows why the
        # previous run ended.
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"\n===== starting {self._command()} =====\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            # Own session: a Ctrl-C in the terminal reaches pytest, whose
            # teardown then stops the server in order, instead of killing the
            # server mid-test.
            start_new_session=True,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                self._raise_exited()
            if self._listening() and self._probe_ready():
                # Re-check after the probe: a server that lost a bind race can
                # still be exiting while a squatter answered our connect.
                if self._process.poll() is not None:
                    self._raise_exited()
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{type(self).__name__} (pid {self._process.pid}) not ready on "
                    f"{self.host}:{self._ports} after {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _listening(self) -> bool:
        assert self._process is not None
        owned = _listening_ports_of(self._process.pid)
        if owned is not None and not set(self._ports) <= owned:
            return False
        return all(_tcp_connectable(self.host, port) for port in self._ports)

    def _raise_exited(self) -> None:
        assert self._process is not None
        code = self._process.returncode
        self.stop()  # closes the log file so the tail is complete
        tail = self.log_tail()
        message = (
            f"{type(self).__name__} exited during startup with code {code}; "
            f"log {self.log_path}:\n{tail}"
        )
        if not self._ports_pinned and "address already in use" in tail.lower():
            raise _PortClashError(message)
        raise RuntimeError(message)


class _PortClashError(RuntimeError):
    """Startup failed because a chosen port was taken meanwhile."""


def _quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (measurement, field, database)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# InfluxDB 1.x
# --------------------------------------------------------------------------


class InfluxDB1Server(ManagedServer):
    """InfluxDB 1.x (``influxd``) with meta/data/wal dirs inside ``data_dir``.

    ``auth``: optional ``(user, password)``.  When given, ``auth-enabled`` is
    switched on, an admin user with these credentials is created on the
    first start, and all helper methods authenticate with it.  By default
    authentication is disabled.

    Two ports are used: ``port`` for HTTP and ``rpc_port`` for the RPC
    (backup/restore) service that influxd always opens (default 8088).
    """

    binary_name = "influxd"
    log_name = "influxd.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        auth: tuple[str, str] | None = None,
        binary: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        super().__init__(
            data_dir, binary=binary, start_timeout=start_timeout, stop_grace=stop_grace
        )
        self.auth = auth
        self.config_path = self.data_dir / "influxdb.conf"
        self._admin_created = False

    def _port_count(self) -> int:
        return 2

    @property
    def rpc_port(self) -> int:
        return self._ports[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _prepare(self) -> None:
        d = self.data_dir
        # Upstream spells the phone-home switch "reporting-disabled"; the Debian
        # build renamed it to "reporting-enabled" (default false).  influxd
        # ignores unknown keys, so both are written to be safe on either build.
        # The monitor store is off so that no "_internal" database appears
        # and no background writes compete with the test's.
        config = f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = {json.dumps(str(d / "meta"))}
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = {json.dumps(str(d / "data"))}
  wal-dir = {json.dumps(str(d / "wal"))}
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = true
  max-row-limit = 0
  unix-socket-enabled = false
  bind-socket = {json.dumps(str(d / "influxdb.sock"))}

[logging]
  suppress-logo = true
"""
        self.config_path.write_text(config)

    def _probe_ready(self) -> bool:
        try:
            response = http_request("GET", f"{self.url}/ping", timeout=2.0)
        except OSError:
            return False
        # The version header tells us it is really influxd answering.
        return response.status == 204 and "X-Influxdb-Version" in response.headers

    def start(self) -> Self:
        super().start()
        if self.auth and not self._admin_created:
            # With auth enabled and no users, influxd accepts exactly one
            # unauthenticated statement kind: creating the first admin.
            user, password = self.auth
            pw = password.replace("\\", "\\\\").replace("'", "\\'")
            try:
                self._query_raw(
                    f"CREATE USER {_quote_ident(user)} WITH PASSWORD '{pw}' WITH ALL PRIVILEGES",
                    db=None,
                    method="POST",
                    authenticate=False,
                )
            except BaseException:
                self.stop()  # a half-set-up server would only confuse the test
                raise
            self._admin_created = True
        return self

    # -- HTTP helpers -------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        # influxd 1.x reads u/p only from the URL query string (not a POST
        # body); Basic auth keeps passwords out of the URL and access log.
        if not self.auth:
            return {}
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """Run an InfluxQL statement via ``/query`` and return the parsed JSON.

        SELECT/SHOW go through GET as documented; anything else (CREATE, DROP,
        ...) through POST, because influxd 1.x deprecates mutating GETs.
        Raises RuntimeError on an HTTP error or if any statement returned an
        ``error``.
        """
        read_only = q.lstrip().upper().startswith(("SELECT", "SHOW"))
        return self._query_raw(q, db=db, method="GET" if read_only else "POST")

    def _query_raw(
        self, q: str, *, db: str | None, method: str, authenticate: bool = True
    ) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        headers = self._auth_headers() if authenticate else {}
        encoded = urllib.parse.urlencode(params)
        if method == "GET":
            response = http_request("GET", f"{self.url}/query?{encoded}", headers=headers)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = http_request(
                "POST", f"{self.url}/query", data=encoded.encode(), headers=headers
            )
        if response.status != 200:
            raise RuntimeError(
                f"InfluxDB query {q!r} failed: HTTP {response.status} {response.body!r}"
            )
        result: dict[str, Any] = json.loads(response.body)
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if "error" in result:
            errors.append(result["error"])
        if errors:
            raise RuntimeError(f"InfluxDB query {q!r} failed: {errors}")
        return result

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {_quote_ident(name)}")

    def write(self, lines: str | Iterable[str], db: str, *, precision: str = "ns") -> None:
        """POST line protocol to ``/write``; raises unless influxd answers 204."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = {"db": db, "precision": precision}
        response = http_request(
            "POST",
            f"{self.url}/write?{urllib.parse.urlencode(params)}",
            data=body.encode(),
            headers=self._auth_headers(),
        )
        if response.status != 204:
            raise RuntimeError(f"InfluxDB write failed: HTTP {response.status} {response.body!r}")

    def count_points(self, db: str, measurement: str, field: str | None = None) -> int:
        """Number of points (rows) stored in ``measurement`` of database ``db``.

        ``SELECT count(*)`` would return one count *per field*, which differs
        from the row count as soon as some points lack a field.  So:

        * with ``field``: ``SELECT count("field")``, i.e. the number of points
          that carry that field (cheap; use a field every point is known to
          have);
        * without ``field``: ``SELECT *`` and count the returned rows, which
          counts every point exactly once but transfers all data, so keep it to
          small test measurements.

        Points with identical series key and timestamp are one point in
        InfluxDB (the later write overwrites), so duplicates are not counted.
        Returns 0 for an absent or empty measurement; raises if ``db`` is missing.
        """
        if field is not None:
            q = f"SELECT count({_quote_ident(field)}) FROM {_quote_ident(measurement)}"
            result = self.query(q, db=db)
            total = 0
            for statement in result.get("results", []):
                for series in statement.get("series", []):
                    for row in series.get("values", []):
                        total += int(row[1])
            return total
        result = self.query(f"SELECT * FROM {_quote_ident(measurement)}", db=db)
        return sum(
            len(series.get("values", []))
            for statement in result.get("results", [])
            for series in statement.get("series", [])
        )


# --------------------------------------------------------------------------
# VictoriaMetrics
# --------------------------------------------------------------------------


class VictoriaMetricsServer(ManagedServer):
    """VictoriaMetrics single node, storage in ``data_dir / "vmdata"``.

    Behaviour verified against VictoriaMetrics 1.79.5 (Debian package):

    * ``POST /api/v2/write?org=o&bucket=b&precision=ns`` with line protocol is
      accepted (204, header ``X-Influxdb-Version: 1.8.0``) with or without an
      ``Authorization: Token x`` header (the token is ignored without
      ``-httpAuth.*``).  ``/write``, ``/influx/write`` and
      ``/influx/api/v2/write`` are accepted the same way.
    * A line ``meter,device=a power=1.5,energy=10i <ts>`` becomes the series
      ``meter_power{device="a"}`` and ``meter_energy{device="a"}``:
      metric name ``<measurement>_<field>``, tags become labels.  This holds
      for single-field lines too (``-influxSkipSingleField`` is off).
    * ``org`` and ``bucket`` are **ignored** in this version: they do not
      become labels, so writes to different buckets land in the same series.
      Only ``?db=NAME`` adds a label ``db="NAME"`` (``-influxDBLabel``), on
      ``/api/v2/write`` as well as on ``/write``.
    * Booleans are stored as 1/0; string field values are stored as 0 (!).
    * Timestamps are truncated to milliseconds (``-influxTrimTimestamp=1ms``).
    * Malformed lines are skipped and only logged; the response is still 204.
    * Written data becomes visible to ``/api/v1/export`` ~0.3-1.5 s later,
      even after ``/internal/force_flush`` (apparently some ingestion buffers
      are only flushed on VictoriaMetrics' internal 1 s tick), so poll with
      :meth:`wait_for_samples`.
    * ``-dedup.minScrapeInterval=1ms`` makes a sample written twice with the
      same (millisecond) timestamp count once in ``/api/v1/export``; without
      the flag the export returns both copies.
    """

    binary_name = "victoria-metrics"
    log_name = "victoria-metrics.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        dedup_interval: str | None = "1ms",
        extra_args: Iterable[str] = (),
        binary: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        """``dedup_interval=None`` disables deduplication; ``extra_args`` are
        appended to the command line (later flags override earlier ones)."""
        super().__init__(
            data_dir, binary=binary, start_timeout=start_timeout, stop_grace=stop_grace
        )
        self.dedup_interval = dedup_interval
        self.extra_args = list(extra_args)
        self.storage_path = self.data_dir / "vmdata"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        args = [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.storage_path}",
            # Retention is counted back from "now"; 100 years keeps test points
            # with both current and historic (e.g. year 2001) timestamps.
            "-retentionPeriod=100y",
            # Default 30s hides the newest points from range queries; tests
            # query right after writing.
            "-search.latencyOffset=0s",
            # The response cache could serve a result computed before the
            # latest write.
            "-search.disableCache",
        ]
        if self.dedup_interval is not None:
            args.append(f"-dedup.minScrapeInterval={self.dedup_interval}")
        return args + self.extra_args

    def _probe_ready(self) -> bool:
        try:
            response = http_request("GET", f"{self.url}/health", timeout=2.0)
        except OSError:
            return False
        return response.status == 200

    def write_line_protocol(
        self,
        lines: str | Iterable[str],
        *,
        org: str = "o",
        bucket: str = "b",
        precision: str = "ns",
        token: str | None = None,
    ) -> None:
        """POST line protocol to the InfluxDB v2 endpoint ``/api/v2/write``."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": precision})
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Token {token}"
        response = http_request(
            "POST", f"{self.url}/api/v2/write?{params}", data=body.encode(), headers=headers
        )
        if response.status != 204:
            raise RuntimeError(
                f"VictoriaMetrics write failed: HTTP {response.status} {response.body!r}"
            )

    def flush(self) -> None:
        """Ask VictoriaMetrics to flush in-memory data (``/internal/force_flush``).

        This shortens, but does not remove, the delay before written data is
        searchable; see :meth:`wait_for_samples`.
        """
        response = http_request("GET", f"{self.url}/internal/force_flush")
        if response.status != 200:
            raise RuntimeError(f"force_flush failed: HTTP {response.status} {response.body!r}")

    def export(self, match: str) -> list[dict[str, Any]]:
        """All series matching ``match`` over all time, from ``/api/v1/export``.

        Each item has ``metric`` (labels incl. ``__name__``), ``values`` and
        ``timestamps`` (ms).  ``reduce_mem_usage`` is deliberately not set:
        it would skip deduplication.
        """
        params = urllib.parse.urlencode({"match[]": match})
        response = http_request("GET", f"{self.url}/api/v1/export?{params}")
        if response.status != 200:
            raise RuntimeError(
                f"VictoriaMetrics export {match!r} failed: HTTP {response.status} {response.body!r}"
            )
        return [json.loads(line) for line in response.body.splitlines() if line.strip()]

    def count_samples(self, match: str) -> int:
        """Number of raw samples stored for series matching ``match``.

        ``match`` is a series selector such as ``{__name__=~"meter_.*"}``;
        the count covers all time and is after deduplication.
        """
        return sum(len(series.get("values", [])) for series in self.export(match))

    def wait_for_samples(self, match: str, expected: int, timeout: float = 10.0) -> int:
        """Flush and poll until ``count_samples(match) >= expected``.

        Returns the last count (which may be below ``expected`` on timeout, or
        above it), so the caller asserts on the exact number.  To check that a
        count *stays* unchanged after a write, write a separate marker series
        in the same request and wait for that marker instead.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            count = self.count_samples(match)
            if count >= expected or time.monotonic() >= deadline:
                return count
            time.sleep(0.1)


# --------------------------------------------------------------------------
# Mosquitto
# --------------------------------------------------------------------------


class TlsFiles(NamedTuple):
    """Paths produced by :func:`generate_tls_files`; a ``(cert, key, cafile)`` tuple."""

    cert: Path
    key: Path
    cafile: Path


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed with code {result.returncode}: {result.stderr.strip()}"
        )


def create_mosquitto_password_file(path: Path, users: Mapping[str, str] | tuple[str, str]) -> Path:
    """Create (overwrite) a Mosquitto password file with hashed passwords.

    ``users`` is ``{"user": "password", ...}`` or a single ``(user, password)``.
    Uses ``mosquitto_passwd -b -c`` for the first user and ``-b`` for the rest.
    """
    binary = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
    pairs = list(users.items()) if isinstance(users, Mapping) else [users]
    if not pairs:
        raise ValueError("at least one user is required")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for index, (user, password) in enumerate(pairs):
        create = ["-c"] if index == 0 else []
        _run([binary, "-b", *create, str(path), user, password])
    # Newer mosquitto versions warn about (and will refuse) group/world
    # readable password files.
    path.chmod(0o600)
    return path


def generate_tls_files(directory: Path, *, common_name: str = LOOPBACK) -> TlsFiles:
    """Create a self-signed CA and a server certificate for 127.0.0.1.

    Uses the ``openssl`` command line.  The server certificate carries
    ``subjectAltName = IP:127.0.0.1, DNS:localhost`` so clients that verify
    the host name (mosquitto_pub/sub do by default) accept it.  EC P-256 keys
    keep generation fast.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl command not found")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [
            openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert),
            "-days", "3650", "-subj", "/CN=Guanjia test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )  # fmt: skip
    _run(
        [
            openssl, "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={common_name}",
        ]
    )  # fmt: skip
    ext.write_text(
        "basicConstraints = CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = IP:{LOOPBACK}, DNS:localhost\n"
    )
    _run(
        [
            openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert),
            "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
            "-days", "825", "-sha256", "-extfile", str(ext),
        ]
    )  # fmt: skip
    return TlsFiles(cert=cert, key=key, cafile=ca_cert)


class MosquittoServer(ManagedServer):
    """Mosquitto 2.x broker on 127.0.0.1.

    * ``password_file``: if given, anonymous clients are refused
      (``allow_anonymous false``); create one with
      :func:`create_mosquitto_password_file`.
    * ``tls``: ``(cert, key, cafile)`` (e.g. from :func:`generate_tls_files`)
      adds a second, TLS listener on ``tls_port``; ``port`` stays plain MQTT.
    * ``persistence``: retained messages, subscriptions and queued QoS>0
      messages are saved to ``data_dir / "persistence"`` every second and on
      shutdown, so they survive ``stop()``/``start()``.
    """

    binary_name = "mosquitto"
    log_name = "mosquitto.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        password_file: Path | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        persistence: bool = True,
        binary: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        # Set before super().__init__, which calls _port_count().
        self.tls = TlsFiles(*tls) if tls is not None else None
        super().__init__(
            data_dir, binary=binary, start_timeout=start_timeout, stop_grace=stop_grace
        )
        self.password_file = Path(password_file) if password_file is not None else None
        self.persistence = persistence
        self.config_path = self.data_dir / "mosquitto.conf"
        self.persistence_dir = self.data_dir / "persistence"

    def _port_count(self) -> int:
        return 2 if self.tls else 1

    @property
    def tls_port(self) -> int:
        if self.tls is None:
            raise RuntimeError("MosquittoServer was created without tls")
        return self._ports[1]

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _prepare(self) -> None:
        # Mosquitto 2.x started as root switches to the "mosquitto" user (or
        # fails if that user does not exist), which then cannot read or
        # write our root-owned 0700 temp dirs.  Naming the current user keeps
        # it as is; for non-root users the option is ignored.
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            f"user {user}",
            # Log to stderr (captured into log_path), not syslog/file.
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                f"cafile {self.tls.cafile}",
            ]
        # Global (per_listener_settings false) so both listeners share the
        # same authentication rules.
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            self.persistence_dir.mkdir(parents=True, exist_ok=True)
            lines += [
                "persistence true",
                # Mosquitto 1.x concatenates location and file name verbatim,
                # hence the slash; 2.x adds its own, and "//" is harmless.
                f"persistence_location {self.persistence_dir}/",
                "persistence_file mosquitto.db",
                # With autosave_on_changes false the interval is in seconds
                # (true would make it a count of changes).
                "autosave_on_changes false",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        self.config_path.write_text("\n".join(lines) + "\n")

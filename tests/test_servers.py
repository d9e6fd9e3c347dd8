"""Tests for tests/servers.py: each server really starts, stores data and stops."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.servers import (
    InfluxDB1Server,
    MosquittoServer,
    VictoriaMetricsServer,
    create_mosquitto_password_file,
    free_port,
    free_ports,
    generate_tls_files,
    http_request,
)

pytestmark = pytest.mark.servers

needs_influxd = pytest.mark.skipif(not InfluxDB1Server.is_available(), reason="influxd missing")
needs_vm = pytest.mark.skipif(
    not VictoriaMetricsServer.is_available(), reason="victoria-metrics missing"
)
needs_mosquitto = pytest.mark.skipif(
    not (MosquittoServer.is_available() and shutil.which("mosquitto_pub")),
    reason="mosquitto or its clients missing",
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped child cannot be signalled; a zombie would still count, which is
    # fine because stop() waits for (reaps) the process.
    return True


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(1024 <= p <= 65535 for p in ports)
    assert isinstance(free_port(), int)


# --------------------------------------------------------------------------
# InfluxDB 1.x
# --------------------------------------------------------------------------


@needs_influxd
def test_influxdb1_write_count_restart(tmp_path: Path) -> None:
    server = InfluxDB1Server(tmp_path / "influx")
    with server:
        port, pid = server.port, server.pid
        assert server.url == f"http://127.0.0.1:{port}"
        assert server.is_running()
        server.create_database("guanjia")

        now = time.time_ns()
        body = "\n".join(
            [
                f"meter,device=a power=1.5 {now}",
                f"meter,device=a power=2.5 {now + 1_000_000}",
                f"meter,device=b power=3.5,energy=7i {now}",
            ]
        )
        params = urllib.parse.urlencode({"db": "guanjia", "precision": "ns"})
        response = http_request("POST", f"{server.url}/write?{params}", data=body.encode())
        assert response.status == 204, response.body

        assert server.count_points("guanjia", "meter") == 3
        assert server.count_points("guanjia", "meter", field="power") == 3
        # Only one point carries "energy": count(field) counts that field.
        assert server.count_points("guanjia", "meter", field="energy") == 1
        assert server.count_points("guanjia", "absent") == 0

        server.stop()
        assert not server.is_running()
        assert not _pid_alive(pid)
        with pytest.raises(RuntimeError):
            _ = server.pid

        server.start()
        assert server.port == port
        assert server.pid != pid
        assert server.count_points("guanjia", "meter") == 3
        server.write(f"meter,device=c power=4.5 {now}", "guanjia")
        assert server.count_points("guanjia", "meter", field="power") == 4
        last_pid = server.pid
    assert not server.is_running()
    assert not _pid_alive(last_pid)


@needs_influxd
def test_influxdb1_query_errors_are_raised(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path) as server:
        with pytest.raises(RuntimeError, match="database not found"):
            server.count_points("nope", "meter")
        result = server.query("SHOW DATABASES")
        assert result["results"][0]["statement_id"] == 0


@needs_influxd
def test_influxdb1_auth(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path, auth=("admin", "s3cr'et")) as server:
        server.create_database("db")
        server.write("m v=1 1", "db")
        assert server.count_points("db", "m", field="v") == 1
        anonymous = http_request(
            "GET", f"{server.url}/query?" + urllib.parse.urlencode({"q": "SHOW DATABASES"})
        )
        assert anonymous.status == 401


@needs_influxd
def test_influxdb1_busy_port_is_reported(tmp_path: Path) -> None:
    with InfluxDB1Server(tmp_path / "first") as first:
        second = InfluxDB1Server(tmp_path / "second", start_timeout=10)
        # Simulate a restart on a port that someone else now holds: pinned
        # ports are not re-picked, so this must fail loudly, not hang.
        second._ports = [first.port, free_port()]
        second._ports_pinned = True
        with pytest.raises(RuntimeError, match="address already in use"):
            second.start()
        assert not second.is_running()
        assert first.is_running()


# --------------------------------------------------------------------------
# VictoriaMetrics
# --------------------------------------------------------------------------

METER = '{__name__=~"meter_.*"}'
MARKER = '{__name__=~"marker_.*"}'


@needs_vm
def test_victoriametrics_v2_write_and_dedup(tmp_path: Path) -> None:
    server = VictoriaMetricsServer(tmp_path / "vm")
    with server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}"
        now = time.time_ns()
        lines = [
            f"meter,device=a power=1.5 {now}",
            f"meter,device=a power=2.5 {now + 1_000_000_000}",
            f"meter,device=b power=3.5 {now}",
        ]
        params = urllib.parse.urlencode({"org": "o", "bucket": "b", "precision": "ns"})
        response = http_request(
            "POST",
            f"{server.url}/api/v2/write?{params}",
            data="\n".join(lines).encode(),
            headers={"Authorization": "Token x"},
        )
        assert response.status == 204, response.body
        assert server.wait_for_samples(METER, 3) == 3

        # Naming: <measurement>_<field>, tags as labels, bucket not a label.
        names = sorted(
            (s["metric"]["__name__"], s["metric"]["device"], tuple(s["metric"]))
            for s in server.export(METER)
        )
        assert names == [
            ("meter_power", "a", ("__name__", "device")),
            ("meter_power", "b", ("__name__", "device")),
        ]

        # Same point again (same timestamp), without a token this time, plus a
        # marker series: once the marker is visible, the duplicate has been
        # ingested too, so an unchanged count really means deduplication.
        server.write_line_protocol([lines[0], f"marker v=1 {now}"])
        assert server.wait_for_samples(MARKER, 1) == 1
        assert server.count_samples(METER) == 3

        # Restart on the same port keeps the data.
        server.stop()
        assert not server.is_running()
        server.start()
        assert server.port == port
        assert server.count_samples(METER) == 3
    assert not server.is_running()


@needs_vm
def test_victoriametrics_without_dedup_keeps_duplicates(tmp_path: Path) -> None:
    # Counter-check that the dedup flag is what makes the test above pass.
    with VictoriaMetricsServer(tmp_path, dedup_interval=None) as server:
        line = "meter,device=a power=1 1700000000000000000"
        server.write_line_protocol(line)
        server.write_line_protocol(line)
        assert server.wait_for_samples(METER, 2) == 2


# --------------------------------------------------------------------------
# Mosquitto
# --------------------------------------------------------------------------


def _client(tool: str, port: int) -> list[str]:
    return [tool, "-h", "127.0.0.1", "-p", str(port)]


def _mqtt_roundtrip(
    port: int, topic: str, payload: str, *extra: str, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    """Receive one message with mosquitto_sub while publishing it repeatedly.

    mosquitto_sub gives no simple "subscribed" signal, so the message is
    re-published until the subscriber got it (or gave up), instead of
    sleeping and hoping the subscription is active.
    """
    common = ["-h", "127.0.0.1", "-p", str(port), "-t", topic, *extra]
    sub = subprocess.Popen(
        ["mosquitto_sub", *common, "-C", "1", "-W", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run(
                ["mosquitto_pub", *common, "-m", payload],
                check=True,
                capture_output=True,
                timeout=5,
            )
            time.sleep(0.1)
        stdout, stderr = sub.communicate(timeout=timeout)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    return subprocess.CompletedProcess(sub.args, sub.returncode, stdout, stderr)


@needs_mosquitto
def test_mosquitto_pub_sub(tmp_path: Path) -> None:
    server = MosquittoServer(tmp_path)
    with server:
        assert server.host == "127.0.0.1"
        assert server.is_running()
        result = _mqtt_roundtrip(server.port, "guanjia/test", "hello")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "hello"
        pid = server.pid
    assert not server.is_running()
    assert not _pid_alive(pid)
    config = (tmp_path / "mosquitto.conf").read_text()
    assert f"listener {server.port} 127.0.0.1" in config


@needs_mosquitto
def test_mosquitto_retained_message_survives_restart(tmp_path: Path) -> None:
    with MosquittoServer(tmp_path) as server:
        port = server.port
        subprocess.run(
            [*_client("mosquitto_pub", port), "-t", "state", "-m", "kept", "-r", "-q", "1"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        server.stop()
        server.start()
        assert server.port == port
        # A retained message is delivered right after subscribing.
        result = subprocess.run(
            [*_client("mosquitto_sub", port), "-t", "state", "-C", "1", "-W", "5"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "kept"
    assert (tmp_path / "persistence" / "mosquitto.db").exists()


@needs_mosquitto
def test_mosquitto_password_rejects_wrong_password(tmp_path: Path) -> None:
    password_file = create_mosquitto_password_file(
        tmp_path / "passwd", {"gateway": "right", "other": "x"}
    )
    with MosquittoServer(tmp_path / "broker", password_file=password_file) as server:
        ok = _mqtt_roundtrip(server.port, "t", "authorised", "-u", "gateway", "-P", "right")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "authorised"

        for creds in (["-u", "gateway", "-P", "wrong"], []):
            rejected = subprocess.run(
                [*_client("mosquitto_pub", server.port), "-t", "t", "-m", "no", *creds],
                capture_output=True,
                text=True,
                timeout=10,
            )
            assert rejected.returncode != 0
            assert "not authorised" in rejected.stderr.lower(), rejected.stderr


@needs_mosquitto
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
def test_mosquitto_tls_listener(tmp_path: Path) -> None:
    tls = generate_tls_files(tmp_path / "tls")
    with MosquittoServer(tmp_path / "broker", tls=tls) as server:
        assert server.tls_port != server.port
        secure = _mqtt_roundtrip(server.tls_port, "t", "secure", "--cafile", str(tls.cafile))
        assert secure.returncode == 0, secure.stderr
        assert secure.stdout.strip() == "secure"
        # The plain listener keeps working next to the TLS one.
        plain = _mqtt_roundtrip(server.port, "t", "plain")
        assert plain.stdout.strip() == "plain"


@needs_mosquitto
def test_mosquitto_without_tls_has_no_tls_port(tmp_path: Path) -> None:
    server = MosquittoServer(tmp_path, persistence=False)
    with pytest.raises(RuntimeError):
        _ = server.tls_port
    with server:
        assert "persistence false" in server.config_path.read_text()
    assert not (tmp_path / "persistence").exists()


@needs_mosquitto
def test_first_start_dodges_a_port_taken_meanwhile(tmp_path: Path) -> None:
    server = MosquittoServer(tmp_path)
    squatted = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", squatted))
        squatter.listen()
        with server:
            # The squatter answers TCP connects on the old port, so only the
            # pid/port ownership check tells that mosquitto itself failed.
            assert server.port != squatted
            result = _mqtt_roundtrip(server.port, "t", "moved")
            assert result.stdout.strip() == "moved"
    assert "already in use" in server.log_tail(100).lower()


@needs_vm
def test_start_timeout_raises_with_log_and_cleans_up(tmp_path: Path) -> None:
    # A zero timeout fails on the first poll, before the server can listen.
    server = VictoriaMetricsServer(tmp_path, start_timeout=0.0)
    with pytest.raises(RuntimeError, match="not ready") as excinfo:
        server.start()
    assert str(server.log_path) in str(excinfo.value)
    assert not server.is_running()

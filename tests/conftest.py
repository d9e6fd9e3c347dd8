"""Fixtures the test modules share: real servers on loopback, started and stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

DB = "building"  # the database the InfluxDB 1.x fixture creates


@pytest.fixture
def influx1(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    """Debian's InfluxDB 1.x with the database `building`."""
    with InfluxDB1Server(tmp_path / "influx") as server:
        server.create_database(DB)
        yield server


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    """VictoriaMetrics, which answers the InfluxDB v2 write API."""
    with VictoriaMetricsServer(tmp_path / "vm") as server:
        yield server


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A real Mosquitto."""
    with MosquittoServer(tmp_path / "mosquitto") as server:
        yield server

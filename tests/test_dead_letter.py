"""Lines the database refuses are kept, counted, shown and sent again: never simply dropped."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config_load import load_site
from gateway.dead_letter import FILE_NAME, DeadLetters
from gateway.service import Gateway
from gateway.view import render
from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server
from tests.sites import meter_site

pytestmark = pytest.mark.servers
DB = "building"
ROOT = Path(__file__).resolve().parent.parent


def _replay_dead_letters(spool: Path, influx: InfluxDB1Server) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "replay",
            "--dead-letter",
            "--spool",
            str(spool),
            "--influx-v1",
            influx.url,
            "--database",
            DB,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


async def test_a_field_type_conflict_is_dead_lettered_counted_shown_and_replayable(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    # An older gateway stored `status` as an integer; this one stores numbers as floats. In
    # one shard InfluxDB refuses every line of the device: each must be kept, not dropped.
    influx1.write(f"meter,device=old status=3i {time.time_ns()}", DB)
    async with modbus_server({1: meter_image()}) as port:
        db = f"influxdb: {{api: v1, url: '{influx1.url}', database: {DB}}}"
        gateway = Gateway(load_site(meter_site(tmp_path, [port], db)), health_interval=3600)
        await gateway.start()
        for _ in range(100):  # until some lines were refused, as the view will show
            await asyncio.sleep(0.1)
            if gateway.writer.dead_letters.lines >= 5:
                break
        view = render(gateway)
        await gateway.stop()
    stats = gateway.writer.stats
    polled = gateway.sink.lines_encoded
    assert polled > 5
    assert stats.points_rejected == polled
    assert stats.points_dead_lettered == polled
    assert stats.points_lost == 0
    health = gateway.health()
    assert health["points_dead_lettered"] == polled
    assert health["dead_letter_points"] == polled
    shown = int(re.search(r"dead letters (\d+)", view).group(1))  # type: ignore[union-attr]
    assert 5 <= shown <= polled
    assert "guanjia replay --dead-letter" in view
    assert influx1.count_points(DB, "meter", field="voltage_v") == 0

    spool = tmp_path / "spool"
    letters = DeadLetters(spool, 1 << 30).read()
    assert len(letters) == polled
    assert all("field type conflict" in d.reason for d in letters)
    assert all(d.line.startswith(b"meter,") for d in letters)
    assert (spool / FILE_NAME).stat().st_mode & 0o777 == 0o600

    # Not fixed yet: everything is refused again and stays, with the reason.
    result = _replay_dead_letters(spool, influx1)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{polled} refused again" in result.stdout
    assert "field type conflict" in result.stderr
    assert len(DeadLetters(spool, 1 << 30).read()) == polled

    # The cause fixed (the old integer series gone), the dead letters land and the file goes.
    influx1.query("DROP MEASUREMENT meter", db=DB)
    result = _replay_dead_letters(spool, influx1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sent {polled} of {polled} lines" in result.stdout
    assert influx1.count_points(DB, "meter", field="voltage_v") == polled
    assert not (spool / FILE_NAME).exists()


def test_dead_letters_are_bounded_and_overflow_is_counted(tmp_path: Path) -> None:
    dead = DeadLetters(tmp_path, max_bytes=200)
    assert dead.add(b"m v=1 1", "HTTP 400: partial write")
    while dead.add(b"m v=1 1", "HTTP 400: partial write"):
        pass
    assert dead.dropped == 1
    assert dead.bytes <= 200
    kept = DeadLetters(tmp_path, max_bytes=200)  # a restart counts what the file holds
    assert kept.lines == dead.lines
    assert len(kept.read()) == dead.lines


def test_writes_resume_when_the_database_returns_not_when_the_backoff_ends(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    # Issue 7: the first write after an outage waited out a backoff of up to 30 s, and points
    # dropped at a full spool in that window were lost for nothing. While the database is
    # unreachable the writer pings it, and a ping that answers ends the wait.
    from gateway.influx_writer import Batch, V1Transport, Writer
    from gateway.spool import Spool

    influx1.stop()
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        writer = Writer(V1Transport(influx1.url, DB, None, None, None, 5.0), spool)
        writer.start()
        i = 0
        while writer.stats.database_up is not False:  # a failed send: unreachable
            writer.submit(Batch(f"meter,device=a v={i}.5 {i + 1}\n".encode(), 1))
            i += 1
            time.sleep(0.05)
        # An hour's backoff from now: only the writer's probe can end the wait early.
        writer._retry_at = time.monotonic() + 3600
        influx1.start()
        for _ in range(600):
            if writer.stats.database_up is True:
                break
            writer.submit(Batch(f"meter,device=a v={i}.5 {i + 1}\n".encode(), 1))
            i += 1
            time.sleep(0.05)
        writer.stop()
        assert writer.stats.database_up is True, "the writer waited for its backoff"
        assert writer.stats.points_written == i
    assert influx1.count_points(DB, "meter", field="v") == i


def test_replay_beside_a_running_gateway_says_so_in_one_line(
    tmp_path: Path, influx1: InfluxDB1Server
) -> None:
    from gateway.spool import Spool

    with Spool(tmp_path / "spool", 1 << 30):  # as the running gateway holds it
        result = _replay_dead_letters(tmp_path / "spool", influx1)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"guanjia replay: spool {tmp_path / 'spool'} is in use by another guanjia process; "
        "stop it first"
    ]

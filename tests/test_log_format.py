"""`guanjia run --log-format json`: one JSON object per line, parsed from a real gateway's
output; text for the journal without the time (the journal stamps each line)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.log_format import JsonFormatter
from tests.modbus_devices import meter_image, modbus_server
from tests.sites import meter_site

ROOT = Path(__file__).resolve().parent.parent


def _run(site: Path, err_path: Path, *args: str, env: dict[str, str] | None = None) -> int:
    with err_path.open("w") as err:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "run", str(site), "--duration", "2", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env=env or dict(os.environ),
            timeout=60,
            check=False,
        ).returncode


async def test_a_running_gateway_logs_one_json_object_per_line(tmp_path: Path) -> None:
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(tmp_path, [port], "")
        err = tmp_path / "stderr"
        assert _run(site, err, "--log-format", "json") == 0, err.read_text()
    lines = err.read_text(encoding="utf-8").splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line, not some
    for record in records:
        assert list(record)[:4] == ["time", "level", "logger", "message"]
        assert record["time"].endswith("+00:00")
    started = next(r for r in records if r["message"].startswith("gateway test-site started"))
    assert started["level"] == "INFO"
    assert started["logger"] == "guanjia"
    stopped = next(r for r in records if r["message"].startswith("gateway stopped: "))
    health = json.loads(stopped["message"].removeprefix("gateway stopped: "))
    assert health["samples"] >= 1


async def test_text_to_the_journal_leaves_the_time_to_it(tmp_path: Path) -> None:
    """systemd names the journal's stream in JOURNAL_STREAM (device:inode of stderr)."""
    async with modbus_server({1: meter_image()}) as port:
        site = meter_site(tmp_path, [port], "")
        journal = tmp_path / "journal"
        journal.touch()
        st = journal.stat()
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert _run(site, journal, env=env) == 0
        elsewhere = tmp_path / "elsewhere"  # the variable inherited, stderr another file
        assert _run(site, elsewhere, env=env) == 0
    first = journal.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("INFO    guanjia: ")
    assert elsewhere.read_text(encoding="utf-8")[:2] == "20"  # the time first, as ever


def test_extra_fields_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("guanjia.test")
    try:
        raise ValueError("bad frame")
    except ValueError:
        logger.error(
            "device %s failed",
            "meter-b1-main",
            exc_info=True,
            extra={"device": "meter-b1-main", "errors": 3, "path": Path("/x"), "level": "x"},
        )
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line
    record = json.loads(line)
    assert record["message"] == "device meter-b1-main failed"
    assert record["level"] == "ERROR"
    assert record["logger"] == "guanjia.test"
    assert record["device"] == "meter-b1-main"
    assert record["errors"] == 3
    assert record["path"] == "/x"  # what JSON cannot carry, as its str()
    assert record["extra_level"] == "x"  # an extra named like a field of ours keeps its value
    assert "ValueError: bad frame" in record["exception"]
    assert "exc_info" not in record
    assert "args" not in record

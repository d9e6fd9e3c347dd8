"""SIGHUP reloads the site file: a bad file is reported and the gateway keeps running on the
one it has; a good one replaces the running gateway without losing a reading."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.spool import Spool
from tests.modbus_devices import meter_image, modbus_server
from tests.sites import meter_site

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


async def _wait_for(proc: subprocess.Popen[str], log: Path, text: str, timeout: float) -> str:
    for _ in range(int(timeout / 0.1)):
        content = log.read_text(encoding="utf-8", errors="replace")
        if text in content:
            return content
        assert proc.poll() is None, content[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log:\n{log.read_text()[-3000:]}")


async def test_sighup_reloads_a_good_file_and_keeps_running_on_a_bad_one(tmp_path: Path) -> None:
    async with modbus_server({1: meter_image()}) as p1, modbus_server({1: meter_image()}) as p2:
        site = meter_site(tmp_path, [p1], "")
        good_first = site.read_text(encoding="utf-8")
        log = tmp_path / "gateway.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", str(site)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            await _wait_for(proc, log, "gateway test-site started: 1 devices", 20)

            # A mistake: reported with the file and the fix, and the old site goes on.
            site.write_text(good_first.replace("poll: 0.05s", "pol: 0.05s"), encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            text = await _wait_for(proc, log, "site file not reloaded", 20)
            assert "unknown key 'pol'; did you mean 'poll'?" in text
            await asyncio.sleep(0.5)
            assert proc.poll() is None

            # A good file with a second device: the gateway starts again on it.
            site_two = meter_site(tmp_path, [p1, p2], "")
            assert site_two == site
            proc.send_signal(signal.SIGHUP)
            await _wait_for(proc, log, "gateway test-site started: 2 devices", 20)
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    runs = [json.loads(m) for m in re.findall(r"gateway stopped: (\{.*\})", text)]
    assert len(runs) == 2
    encoded = sum(int(r["lines_encoded"]) for r in runs)
    assert encoded > 20
    # No database: every line of both gateways waits in the spool, none lost in the swap.
    with Spool(tmp_path / "spool", 1 << 30) as spool:
        assert len(spool) == encoded

"""`guanjia read` on a DL/T 645 meter of the virtual building, read through the driver's own
runtime, and on a meter that does not answer; as the integrator runs it, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path

from simulator.building import start_building
from simulator.clock import SimClock
from simulator.site import read_site
from tests.sites import demo_on_free_ports

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "config" / "demo-site.yaml"
METER = "meter-3f-dlt645"


def _demo_on_free_ports(tmp_path: Path) -> Path:
    return demo_on_free_ports(tmp_path)[0]


async def _guanjia(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_read_prints_a_dlt645_meters_values_with_units(tmp_path: Path) -> None:
    site = _demo_on_free_ports(tmp_path)
    clock = SimClock(speed=0.0, start=datetime(2025, 7, 15, 10, 0))
    building = await start_building(read_site(site), clock)
    try:
        code, out, err = await _guanjia("read", str(site), METER)
        assert code == 0, err
        assert out.splitlines()[0] == f"{METER} (dlt645_meter, DL/T 645)"
        energy = next(line for line in out.splitlines() if "energy_import_kwh" in line)
        assert energy.split()[2] == "kWh"
        assert float(energy.split()[1]) > 0
        code, out, err = await _guanjia("read", str(site), METER, "--json")
        assert code == 0, err
        values = json.loads(out)["values"]
        assert 215.0 <= values["voltage_l1_v"] <= 240.0
    finally:
        await building.stop()


async def test_read_of_a_meter_that_does_not_answer_says_so_and_exits_2(tmp_path: Path) -> None:
    site = _demo_on_free_ports(tmp_path)  # nothing serves its ports
    code, out, err = await _guanjia("read", str(site), METER, "--wait", "3")
    assert code == 2
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith(f"{METER} did not answer: cannot connect to 127.0.0.1:"), err

"""Guanjia as an edge box gets it, by the commands of README.md's "Install on an edge box": a
wheel that carries the shipped data (config/, as the package guanjia_data), installed into a
fresh venv with the pinned dependencies (constraints.txt), a `guanjia` that works from any
folder on the data of its own package, its user and systemd unit, and readings in InfluxDB.

The fresh venv is a real one, not this checkout's in disguise: the README's `python3 -m venv`
(no system site-packages), the wheel built by the Makefile's `wheel` recipe from a copy of the
tree, installed by the venv's own pip with `--constraint constraints.txt` from the package
index pip is configured with (PyPI on a fresh machine; its cache makes the next run quick).
Nothing of the checkout is on its path: its `guanjia` runs from a scratch folder with
PYTHONPATH unset, so a profile, alarm kind, factor set or calendar year it finds can only come
from the wheel. The module installs once for all its tests, in about a minute (most of it pip
unpacking numpy and matplotlib).

The README's commands run on this machine in a scratch root standing for the box's file
system; how each is translated is in `Box` and `Readme` below, and the README says it too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.modbus_devices import meter_image, modbus_server
from tests.servers import InfluxDB1Server, free_port, free_ports
from tests.sites import meter_site
from tools.constraints import pins, render

# The module's fixture installs a fresh venv: about a minute and a half in all.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CODE = ("accounts", "core", "drivers", "gateway", "rules", "simulator")
DATA_PACKAGE = "guanjia_data"
SECTION = "## Install on an edge box"
NOT_RUN = "# not run by the tests"


def tree_files() -> list[str]:
    """The working tree's files as git sees them: tracked, or new and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def clean_env(**extra: str) -> dict[str, str]:
    """This process' environment without what would lead Python to the checkout or this
    venv; pip keeps its index settings (how this machine reaches the packages)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return {**env, **extra}


class Readme:
    """The section's command blocks, in order."""

    def __init__(self) -> None:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        assert SECTION in text, "README.md lost its edge-box section"
        self.text = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
        self.blocks = [b.splitlines() for b in re.findall(r"```sh\n(.*?)```", self.text, re.S)]
        self.yaml = re.findall(r"```yaml\n(.*?)```", self.text, re.S)

    def build(self) -> list[str]:
        return self.blocks[0]

    def box(self) -> list[str]:
        """Every command for the box, but the Grafana repository's (the one block marked
        as not run; it holds nothing else)."""
        skipped = [b for b in self.blocks[1:] if b[0].startswith(NOT_RUN)]
        assert len(skipped) == 1
        for line in skipped[0][1:]:
            assert re.search(r"grafana|keyrings|apt-get update", line), line
        return [line for b in self.blocks[1:] if b not in skipped for line in b if line]


# What the test puts first in every shell: the user is the test's, there is no other.
PRELUDE = r"""
set -o pipefail
sudo() { if [ "$1" = -u ]; then shift 2; fi; "$@"; }
install() {
  local args=()
  while (($#)); do case $1 in -o|-g) shift 2 ;; *) args+=("$1"); shift ;; esac; done
  command install "${args[@]}"
}
apt-get() { command apt-get --simulate "$@"; }
systemd-sysusers() { command systemd-sysusers --root="$BOX_ROOT" "$@"; }
"""


@dataclass
class Box:
    """A scratch root for the box's /opt, /etc and /var/lib, the folder the wheel and
    constraints.txt were copied to (the commands' working directory), and the ports moved."""

    root: Path
    folder: Path
    wheel: Path
    ports: dict[int, int] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    done: int = 0  # box commands the fixture ran

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "guanjia"

    @property
    def guanjia(self) -> Path:
        return self.venv / "bin" / "guanjia"

    def moved(self, text: str) -> str:
        text = re.sub(
            r"(?<![\w/.$])/(opt/guanjia|etc/|var/lib/)", lambda m: f"{self.root}/{m[1]}", text
        )
        for old, new in self.ports.items():
            # The box's own addresses only (not `influxdb:8086` of the compose network).
            text = re.sub(rf"(127\.0\.0\.1:|port: ){old}(?!\d)", rf"\g<1>{new}", text)
        return text

    def env(self) -> dict[str, str]:
        return clean_env(BOX_ROOT=str(self.root), **self.variables)

    def argv(self, line: str) -> list[str]:
        return ["bash", "-c", PRELUDE + self.moved(line)]

    def assignment(self, line: str) -> tuple[str, str] | None:
        match = re.fullmatch(r"([A-Z_]+)=(.*)", line)
        return (match[1], f"printf %s {match[2]}") if match else None

    def run(self, line: str) -> str:
        """A command as the box would run it, here; its output."""
        assigned = self.assignment(line)
        done = subprocess.run(
            self.argv(assigned[1] if assigned else line),
            cwd=self.folder,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        if assigned:
            self.variables[assigned[0]] = done.stdout
        return done.stdout

    async def run_async(self, line: str) -> str:
        """The same, with the test's event loop (and the devices it serves) running."""
        assigned = self.assignment(line)
        proc = await asyncio.create_subprocess_exec(
            *self.argv(assigned[1] if assigned else line),
            cwd=self.folder,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, f"{line}\n{out.decode()[-2000:]}\n{err.decode()[-3000:]}"
        if assigned:
            self.variables[assigned[0]] = out.decode()
        return out.decode()


def build_wheel(tmp: Path) -> Path:
    """`make wheel` on a copy of the tree (the checkout's build/ and dist/ stay untouched),
    with this venv's Python, whose setuptools the recipe builds with."""
    src = tmp / "src"
    for name in tree_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    stamp = src / ".venv-installed"
    stamp.touch()  # newer than pyproject.toml: make takes the venv as installed
    [command] = [line.split("#")[0].strip() for line in Readme().build()]
    assert command == "make wheel"
    subprocess.run(
        [*shlex.split(command), "-s", f"STAMP={stamp.name}", f"PY={sys.executable}"],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    [wheel] = (src / "dist").glob("guanjia-*.whl")
    return wheel


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Box:
    """The README's build, then its box commands up to the gateway's install."""
    tmp = tmp_path_factory.mktemp("install")
    readme = Readme()
    wheel = build_wheel(tmp)
    assert f"dist/{wheel.name}" in readme.text, "README.md names another wheel"
    root = tmp / "root"
    # What a Debian box has before: its users and groups (dialout among them), systemd's
    # folders, and those the grafana package makes.
    (root / "etc").mkdir(parents=True)
    shutil.copy("/etc/passwd", root / "etc")
    shutil.copy("/etc/group", root / "etc")
    for folder in (
        "etc/sysusers.d",
        "etc/systemd/system",
        "etc/grafana/provisioning/dashboards",
        "etc/grafana/provisioning/datasources",
        "opt",
        "var/lib",
        "run",
    ):
        (root / folder).mkdir(parents=True)
    folder = tmp / "box"
    folder.mkdir()
    shutil.copy(wheel, folder)
    shutil.copy(ROOT / "constraints.txt", folder)
    installed = Box(root, folder, folder / wheel.name)
    commands = readme.box()
    install = next(i for i, line in enumerate(commands) if "/bin/pip install " in line)
    for line in commands[: install + 1]:
        installed.run(line)
    installed.done = install + 1
    return installed


def test_pyproject_lists_every_package_and_data_folder() -> None:
    """The package list is written out (a find cannot name the mapped guanjia_data): a new
    package or data folder missing from it would be missing from the wheel."""
    from setuptools import find_packages

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    code = find_packages(where=str(ROOT), include=[f"{p}*" for p in CODE])
    shipped = {Path(name).parent for name in tree_files() if name.startswith("config/")}
    folders = {p for d in shipped for p in (d, *d.parents) if p != Path(".")}
    data = [DATA_PACKAGE + ".".join(("", *p.parts[1:])) for p in folders]
    assert sorted(setuptools["packages"]) == sorted([*code, *data])
    assert setuptools["package-dir"] == {DATA_PACKAGE: "config"}


def test_constraints_pin_what_the_tests_run_with() -> None:
    """constraints.txt is the tested venv's set; after an upgrade there, `make constraints`."""
    written = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert written == render(pins()), "constraints.txt is not this venv's set: make constraints"
    # Every runtime dependency is pinned, exactly.
    pinned = dict(re.findall(r"^([\w.-]+)==(\S+)$", written, re.M))
    for name in ("pymodbus", "pyserial", "pydantic", "prometheus-client", "matplotlib"):
        assert name in pinned, name


def guanjia(
    box: Box, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed `guanjia`, from a folder outside the checkout."""
    return subprocess.run(
        [str(box.guanjia), *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(900)
def test_the_wheel_carries_every_shipped_file(box: Box) -> None:
    with zipfile.ZipFile(box.wheel) as wheel:
        packed = set(wheel.namelist())
    shipped = {n for n in tree_files() if n.startswith("config/")}
    assert shipped
    missing = {n for n in shipped if n.replace("config/", f"{DATA_PACKAGE}/", 1) not in packed}
    assert missing == set()
    for name in ("profiles/eastron_sdm630.yaml", "alarm_kinds.yaml", "systemd/guanjia.service"):
        assert f"{DATA_PACKAGE}/{name}" in packed
    # Nothing of the checkout's own (tests, benchmarks, tools) goes to a box.
    assert not {n for n in packed if n.split("/")[0] in ("tests", "bench", "tools", "config")}


@pytest.mark.timeout(900)
def test_the_fresh_venv_holds_the_pinned_set(box: Box) -> None:
    frozen = subprocess.run(
        [str(box.venv / "bin" / "pip"), "freeze"],  # not pip and setuptools: venv's own
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-e " not in frozen  # a wheel, not the checkout
    got = dict(re.findall(r"^([\w.-]+)==(\S+)$", frozen, re.M))
    pinned = dict(re.findall(r"^([\w.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(k): v for k, v in pinned.items()}
    installed = {norm(k): v for k, v in got.items() if norm(k) != "guanjia"}
    assert {k: v for k, v in installed.items() if pinned.get(k) != v} == {}
    assert "prometheus-client" in installed
    assert not (box.venv / "pyvenv.cfg").read_text().count("include-system-site-packages = true")


@pytest.mark.timeout(900)
def test_installed_guanjia_works_from_its_own_package(box: Box, tmp_path: Path) -> None:
    """From a folder outside the checkout: the data folder is the package in the venv, a
    site of shipped profiles, rules, factor set and calendar checks, and the demo runs."""
    said = guanjia(box, "data-dir", cwd=tmp_path)
    assert said.returncode == 0, said.stderr
    data = Path(said.stdout.strip())
    assert data.name == DATA_PACKAGE
    assert data.is_relative_to(box.venv)
    assert not data.is_relative_to(ROOT)

    # The demo site as the package has it: 62 devices of the shipped profiles, rules of the
    # shipped alarm kinds, accounts with the cn-2023 factor set, the shipped calendar. Its
    # ports moved to free ones (another demo may be running), its files beside it.
    text = (data / "demo-site.yaml").read_text(encoding="utf-8")
    ports = sorted(set(re.findall(r"port: (150\d\d)", text)))
    for old, new in zip(ports, free_ports(len(ports)), strict=True):
        text = text.replace(f"port: {old}", f"port: {new}")
    site = tmp_path / "site" / "demo-site.yaml"
    site.parent.mkdir()
    site.write_text(text, encoding="utf-8")
    shutil.copy(data / "demo-camera.secret", site.parent)
    checked = guanjia(box, "check", str(site), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"{site}: ok — site city-hall" in checked.stdout

    state = tmp_path / "state"
    env = clean_env(XDG_STATE_HOME=str(state))
    demo = guanjia(
        box, "demo", "--site", str(site), "--no-view", "--duration", "6", "--speed", "60",
        cwd=tmp_path,
        env=env,
        timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr
    assert "gateway city-hall started" in demo.stderr
    spool = tmp_path / "var" / "demo-spool"  # ../var of the site file
    assert any(spool.iterdir()), "the demo spooled nothing"
    assert not (data.parent / "var").exists()

    # Without --site, the shipped demo site is copied where the user may write (the
    # package's folder is no place for a spool), with the camera password it names.
    where = subprocess.run(
        [
            str(box.venv / "bin" / "python"),
            "-c",
            "from gateway.demo import shipped_demo_site; print(shipped_demo_site())",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == state / "guanjia" / "demo" / "config" / "demo-site.yaml"
    assert (Path(where).parent / "demo-camera.secret").is_file()
    shipped = (data / "demo-site.yaml").read_text(encoding="utf-8")
    assert Path(where).read_text(encoding="utf-8") == shipped


# --- the rest of the README: user, unit, site file, service, Grafana -------------------------


@dataclass
class Service:
    """The unit as `systemctl` would run it, with its paths moved into the box's root."""

    box: Box
    unit: dict[str, list[str]] = field(default_factory=dict)
    journal: Path | None = None
    proc: asyncio.subprocess.Process | None = None

    def daemon_reload(self) -> None:
        """`systemd-analyze verify` of the installed unit: no warning, the binary there."""
        installed = self.box.root / "etc/systemd/system/guanjia.service"
        moved = self.box.root / "run/guanjia.service"
        moved.write_text(self.box.moved(installed.read_text(encoding="utf-8")), encoding="utf-8")
        done = subprocess.run(
            ["systemd-analyze", "verify", str(moved)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout + done.stderr == ""
        self.unit = {}
        for line in moved.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                self.unit.setdefault(key, []).append(value)

    def value(self, key: str) -> str:
        [value] = self.unit[key]
        return value

    async def start(self) -> None:
        assert self.unit, "systemctl daemon-reload first"
        assert self.value("WantedBy") == "multi-user.target"  # what enable links it into
        # Its user, made by systemd-sysusers, in the serial ports' group.
        passwd = (self.box.root / "etc/passwd").read_text()
        group = (self.box.root / "etc/group").read_text()
        user = self.value("User")
        assert re.search(
            rf"^{user}:x:\d+:\d+:[^:]*:/var/lib/guanjia:/usr/sbin/nologin$", passwd, re.M
        )
        [supplementary] = self.unit["SupplementaryGroups"]
        assert re.search(rf"^{supplementary}:x:\d+:(.*,)?{user}(,.*)?$", group, re.M)
        assert self.value("StateDirectory") == "guanjia"
        cwd = Path(self.value("WorkingDirectory").replace("%S", str(self.box.root / "var/lib")))
        env = clean_env()
        env_file = Path(self.value("EnvironmentFile").removeprefix("-"))
        if env_file.exists():
            env.update(dict(line.split("=", 1) for line in env_file.read_text().splitlines()))
        self.journal = self.box.root / "run/journal"
        with self.journal.open("w") as journal:
            self.proc = await asyncio.create_subprocess_exec(
                *shlex.split(self.value("ExecStart")),
                cwd=cwd,
                env=env,
                stdout=journal,
                stderr=journal,
            )
        await self.wait_for("started")

    async def wait_for(self, text: str, after: int = 0, timeout: float = 30) -> str:
        assert self.journal is not None
        assert self.proc is not None
        for _ in range(int(timeout / 0.1)):
            said = self.journal.read_text(encoding="utf-8")
            if text in said[after:]:
                return said
            assert self.proc.returncode is None, said[-3000:]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{text!r} not logged:\n{self.journal.read_text()[-3000:]}")

    async def reload(self) -> None:
        assert self.value("ExecReload") == "/bin/kill -HUP $MAINPID"
        assert self.proc is not None
        assert self.journal is not None
        before = len(self.journal.read_text(encoding="utf-8"))
        self.proc.send_signal(signal.SIGHUP)
        await self.wait_for("site file reloaded", after=before)

    async def stop(self) -> int:
        """SIGTERM, as systemctl stop; within TimeoutStopSec."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        timeout = float(self.value("TimeoutStopSec").removesuffix("s"))
        return await asyncio.wait_for(self.proc.wait(), timeout)


def grafana_reads_the_readings(box: Box, influx: InfluxDB1Server) -> None:
    """What `systemctl enable --now grafana-server` would show: the shipped dashboards where
    the shipped provider looks, and the data source on the database with the readings."""
    provider = yaml.safe_load(
        (box.root / "etc/grafana/provisioning/dashboards/guanjia.yaml").read_text()
    )
    [folder] = [Path(p["options"]["path"]) for p in provider["providers"]]
    installed = {p.name for p in (box.root / folder.relative_to("/")).glob("*.json")}
    assert installed == {p.name for p in (ROOT / "config/grafana/dashboards").glob("*.json")}
    assert installed
    sources = yaml.safe_load(
        (box.root / "etc/grafana/provisioning/datasources/guanjia.yaml").read_text()
    )
    [source] = sources["datasources"]
    assert source["url"] == influx.url
    database = source["jsonData"]["dbName"]
    rows = influx.query('SELECT count("voltage_v") FROM "meter"', db=database)
    assert rows["results"][0]["series"][0]["values"][0][1] > 0


@pytest.mark.servers
@pytest.mark.timeout(900)
async def test_the_readme_from_a_bare_box_to_data_in_grafana(box: Box, tmp_path: Path) -> None:
    readme = Readme()
    commands = readme.box()[box.done :]
    async with modbus_server({1: meter_image()}) as device_port:
        with InfluxDB1Server(tmp_path / "influx") as influx:
            box.ports = {8086: influx.port, 9108: free_port()}
            # The site file: the test's meter (its profile beside it) and the README's block.
            meter = yaml.safe_load(meter_site(tmp_path, [device_port], "").read_text())
            [block] = [b for b in readme.yaml if "metrics:" in b]
            site = {**meter, **yaml.safe_load(box.moved(block))}
            site["profile_dirs"] = [str(tmp_path / "profiles")]
            (box.folder / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
            service = Service(box)
            try:
                for line in commands:
                    command = line.removeprefix("sudo ")
                    if command == "systemctl daemon-reload":
                        service.daemon_reload()
                    elif command == "systemctl enable --now guanjia":
                        await service.start()
                    elif command == "systemctl reload guanjia":
                        await service.reload()
                    elif command == "systemctl enable --now grafana-server":
                        grafana_reads_the_readings(box, influx)
                    elif command.startswith("journalctl -u guanjia"):
                        assert service.journal is not None
                        assert "gateway test-site started: 1 devices" in service.journal.read_text()
                    else:
                        said = await box.run_async(line)
                        if "/metrics" in line:
                            assert re.search(r"^guanjia_devices_online 1\.0$", said, re.M), said
                        if line.startswith("sudo systemd-sysusers"):
                            assert "guanjia" in (box.root / "etc/passwd").read_text()
                assert service.proc is not None, "the README never starts the gateway"
            finally:
                code = await service.stop()
            assert code == 0, service.journal.read_text()[-3000:] if service.journal else ""
            # Everything it wrote is under /var/lib/guanjia, and the readings are in the
            # database (its last batch written at the stop).
            assert any((box.root / "var/lib/guanjia/spool").iterdir())
            rows = influx.query('SELECT count("voltage_v") FROM "meter"', db="building")
            assert rows["results"][0]["series"][0]["values"][0][1] > 0

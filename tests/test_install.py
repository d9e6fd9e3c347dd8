"""Guanjia as an edge box gets it: a wheel that carries the shipped data (config/, as the
package guanjia_data), installed into a fresh venv with the pinned dependencies
(constraints.txt), and a `guanjia` that works from any folder on the data of its own package.

The fresh venv is a real one, not this checkout's in disguise: `python -m venv` without
system site-packages, the wheel built by the Makefile's `wheel` recipe from a copy of the
tree, installed by the venv's own pip with `--constraint constraints.txt` from the package
index pip is configured with (PyPI on a fresh machine; its cache makes the second run quick).
Nothing of the checkout is on its path: the tests run its `guanjia` from a scratch folder with
PYTHONPATH unset, so a profile, alarm kind, factor set or calendar year it finds can only come
from the wheel. It takes about a minute, most of it pip unpacking numpy and matplotlib; the
module builds the venv once for all its tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_ports
from tools.constraints import pins, render

ROOT = Path(__file__).resolve().parent.parent
CODE = ("accounts", "core", "drivers", "gateway", "rules", "simulator")
DATA_PACKAGE = "guanjia_data"


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


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    scratch: Path  # a folder outside the checkout to run from

    @property
    def guanjia(self) -> Path:
        return self.venv / "bin" / "guanjia"

    def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.guanjia), *args],
            cwd=self.scratch,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


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
    subprocess.run(
        ["make", "-s", "wheel", f"STAMP={stamp.name}", f"PY={sys.executable}"],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    [wheel] = (src / "dist").glob("guanjia-*.whl")
    return wheel


def make_venv(venv: Path, wheel: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--constraint",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    make_venv(venv, wheel)
    scratch = tmp / "scratch"
    scratch.mkdir()
    return Installed(wheel, venv, scratch)


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


@pytest.mark.timeout(900)
def test_the_wheel_carries_every_shipped_file(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        packed = set(wheel.namelist())
    shipped = {n for n in tree_files() if n.startswith("config/")}
    assert shipped
    missing = {n for n in shipped if n.replace("config/", f"{DATA_PACKAGE}/", 1) not in packed}
    assert missing == set()
    for name in ("profiles/eastron_sdm630.yaml", "alarm_kinds.yaml", "factors/cn-2023.yaml"):
        assert f"{DATA_PACKAGE}/{name}" in packed
    # Nothing of the checkout's own (tests, benchmarks, tools) goes to a box.
    assert not {n for n in packed if n.split("/")[0] in ("tests", "bench", "tools", "config")}


@pytest.mark.timeout(900)
def test_the_fresh_venv_holds_the_pinned_set(installed: Installed) -> None:
    frozen = subprocess.run(
        [str(installed.venv / "bin" / "pip"), "freeze"],  # not pip and setuptools: venv's own
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = dict(re.findall(r"^([\w.-]+)==(\S+)$", frozen, re.M))
    pinned = dict(re.findall(r"^([\w.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(k): v for k, v in pinned.items()}
    installed_set = {norm(k): v for k, v in got.items() if norm(k) not in ("pip", "guanjia")}
    unpinned = {k: v for k, v in installed_set.items() if pinned.get(k) != v}
    assert unpinned == {}
    assert "prometheus-client" in installed_set


@pytest.mark.timeout(900)
def test_installed_guanjia_works_from_its_own_package(installed: Installed) -> None:
    """From a folder outside the checkout: the data folder is the package in the venv, a
    site of shipped profiles, rules, factor set and calendar checks, and the demo runs."""
    said = installed.run("data-dir")
    assert said.returncode == 0, said.stderr
    data = Path(said.stdout.strip())
    assert data.name == DATA_PACKAGE
    assert data.is_relative_to(installed.venv)
    assert not data.is_relative_to(ROOT)

    # The demo site as the package has it: 61 devices of 45 shipped profiles, rules of the
    # shipped alarm kinds, accounts with the cn-2023 factor set, the shipped calendar. Its
    # ports moved to free ones (another demo may be running), its files beside it.
    text = (data / "demo-site.yaml").read_text(encoding="utf-8")
    ports = sorted(set(re.findall(r"port: (150\d\d)", text)))
    for old, new in zip(ports, free_ports(len(ports)), strict=True):
        text = text.replace(f"port: {old}", f"port: {new}")
    site = installed.scratch / "site" / "demo-site.yaml"
    site.parent.mkdir()
    site.write_text(text, encoding="utf-8")
    shutil.copy(data / "demo-camera.secret", site.parent)
    checked = installed.run("check", str(site))
    assert checked.returncode == 0, checked.stderr
    assert f"{site}: ok — site city-hall" in checked.stdout

    state = installed.scratch / "state"
    env = clean_env(XDG_STATE_HOME=str(state))
    demo = installed.run(
        "demo", "--site", str(site), "--no-view", "--duration", "8", "--speed", "60",
        timeout=120,
        env=env,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr
    assert "gateway city-hall started" in demo.stderr
    spool = installed.scratch / "var" / "demo-spool"  # ../var of the site file
    assert any(spool.iterdir()), "the demo spooled nothing"
    assert not (data.parent / "var").exists()

    # Without --site, the shipped demo site is copied where the user may write (the
    # package's folder is no place for a spool), with the camera password it names.
    where = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "from gateway.demo import shipped_demo_site; print(shipped_demo_site())",
        ],
        cwd=installed.scratch,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == state / "guanjia" / "demo" / "config" / "demo-site.yaml"
    assert (Path(where).parent / "demo-camera.secret").is_file()
    assert Path(where).read_text(encoding="utf-8") == (data / "demo-site.yaml").read_text(
        encoding="utf-8"
    )

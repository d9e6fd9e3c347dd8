"""The Docker stack, as far as it can be checked without a Docker engine (there is none on the
build machines, so no image is built and no container runs here):

- docker-compose.yml (a real site) and docker-compose.demo.yml (the virtual building) as
  Debian's docker-compose reads them (`docker-compose config`): services, mounts, volumes,
  the hardening of the gateway container, and which service gets which secret;
- .env.example against every variable the compose files read;
- the Dockerfile and .dockerignore as text: two stages, the package installed non-editable
  with the constraints file, a non-root user, a health check, no secret baked in;
- the pieces run for real: the shipped Mosquitto config with the password file passwords.sh
  writes and the shipped ACL, on Debian's mosquitto; the InfluxDB init script with a stand-in
  `influx` that records what it is asked; the health check against an HTTP endpoint; the
  site files the containers run, through `guanjia check`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway import healthcheck
from gateway.cli import main as guanjia
from gateway.config_load import load_site
from gateway.site import BrokerConfig, MqttConfig
from tests.servers import MosquittoServer, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DEMO = ROOT / "docker-compose.demo.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER_COMPOSE = shutil.which("docker-compose")
SHELLCHECK = shutil.which("shellcheck")
needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="needs Debian's docker-compose (make servers installs it)"
)

# Which services may see which secret: each no more than needs it.
SECRETS_SEEN_BY = {
    "INFLUX_TOKEN": {"influxdb", "grafana", "gateway"},
    "INFLUX_PASSWORD": {"influxdb"},
    "GRAFANA_PASSWORD": {"grafana"},
    "MQTT_GATEWAY_PASSWORD": {"mosquitto", "gateway"},
    "MQTT_OPERATOR_PASSWORD": {"mosquitto"},
    "MQTT_DEVICES_PASSWORD": {"mosquitto"},
}
GATEWAY_UID = 10001


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def compose_variables(path: Path) -> dict[str, str]:
    """Every ${VAR…} the file reads, with what follows the name (`:?message`, `:-default`)."""
    found = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", path.read_text())
    return dict(found)


def secret_value(name: str) -> str:
    return f"s3cret-{name.lower().replace('_', '-')}"


def compose_config(tmp_path: Path, *files: Path, env: dict[str, str] | None = None) -> Any:
    """`docker-compose config` of the files, from the repository (bind mounts resolve there),
    with an .env made from .env.example in `tmp_path` (every secret a distinct value) and
    nothing from this process's environment."""
    assert DOCKER_COMPOSE is not None
    values = {
        name: value or (secret_value(name) if name in SECRETS_SEEN_BY else "")
        for name, value in env_example().items()
    }
    if env is not None:
        values.update(env)
    dotenv = tmp_path / "compose.env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    argv = [DOCKER_COMPOSE, "--project-directory", str(ROOT), "--env-file", str(dotenv)]
    for file in files:
        argv += ["-f", str(file)]
    done = subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        cwd=tmp_path,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"docker-compose config failed: {done.stderr}")
    return yaml.safe_load(done.stdout)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source:mode of a service's volumes, as docker-compose config writes them."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, mode = [*volume.split(":"), "rw"][:3]
        out[target] = f"{source}:{mode}"
    return out


# ---------------------------------------------------------------------------------------------
# .env.example and the compose files


def test_env_example_lists_every_variable_the_compose_files_read_and_no_other() -> None:
    read = compose_variables(COMPOSE) | compose_variables(DEMO)
    listed = env_example()
    assert set(read) == set(listed)
    # The secrets have no value to copy: compose refuses to start until each is set.
    for name in SECRETS_SEEN_BY:
        assert listed[name] == "", f"{name} must be empty in .env.example"
        assert read[name].startswith(":?"), f"{name} must be required (${{{name}:?…}})"
    for name in set(read) - set(SECRETS_SEEN_BY):
        assert read[name].startswith(":-"), f"{name} is a setting with a default"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


@needs_compose
def test_the_real_site_stack_as_docker_compose_reads_it(tmp_path: Path) -> None:
    config = compose_config(tmp_path, COMPOSE)
    services = config["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana", "gateway"}
    assert set(config["volumes"]) == {
        "mosquitto-data",
        "influxdb-data",
        "influxdb-config",
        "grafana-data",
        "gateway-data",
    }

    gateway = services["gateway"]
    assert gateway["build"]["context"] == str(ROOT)
    assert "entrypoint" not in gateway  # the image's: guanjia
    assert gateway["command"] == ["run", "/etc/guanjia/site.yaml"]
    assert mounts(gateway) == {
        "/etc/guanjia/site.yaml": f"{ROOT}/config/site.docker.yaml:ro",
        "/etc/guanjia/profiles": f"{ROOT}/config/profiles:ro",
        "/var/lib/guanjia": "gateway-data:rw",
    }
    # Nothing writable but the data volume and /tmp; no capabilities, no privilege gain;
    # the user is the image's (non-root, the Dockerfile), not overridden here.
    assert gateway["read_only"] is True
    assert gateway["tmpfs"] == ["/tmp"]
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert "user" not in gateway
    assert "privileged" not in gateway
    assert set(gateway["depends_on"]) == {"influxdb", "mosquitto"}

    mosquitto = services["mosquitto"]
    assert mounts(mosquitto) == {
        "/mosquitto/config/mosquitto.conf": f"{ROOT}/config/mosquitto/mosquitto.conf:ro",
        "/mosquitto/config/acl": f"{ROOT}/config/mosquitto/acl:ro",
        "/mosquitto/config/passwords.sh": f"{ROOT}/config/mosquitto/passwords.sh:ro",
        "/mosquitto/data": "mosquitto-data:rw",
    }
    script = mosquitto["entrypoint"][-1]
    assert script.startswith("sh /mosquitto/config/passwords.sh /mosquitto/data/passwd &&")
    assert "exec /docker-entrypoint.sh /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf" in (
        script
    )

    influxdb = services["influxdb"]
    assert mounts(influxdb) == {
        "/var/lib/influxdb2": "influxdb-data:rw",
        "/etc/influxdb2": "influxdb-config:rw",
        "/docker-entrypoint-initdb.d": f"{ROOT}/config/influxdb/init:ro",
    }
    init = influxdb["environment"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert init["DOCKER_INFLUXDB_INIT_ORG"] == "guanjia"
    assert init["DOCKER_INFLUXDB_INIT_BUCKET"] == "building"
    assert init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == secret_value("INFLUX_TOKEN")
    assert influxdb["ports"] == ["127.0.0.1:8086:8086/tcp"]  # the database: loopback only
    assert influxdb["healthcheck"]["test"] == ["CMD", "influx", "ping"]

    grafana = services["grafana"]
    assert mounts(grafana) == {
        "/etc/grafana/provisioning": f"{ROOT}/config/grafana/provisioning:ro",
        "/var/lib/grafana/dashboards": f"{ROOT}/config/grafana/dashboards:ro",
        "/var/lib/grafana": "grafana-data:rw",
    }
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # The provisioned dashboard providers read the folder the dashboards are mounted on.
    for file in (ROOT / "config/grafana/provisioning/dashboards").glob("*.yaml"):
        for provider in yaml.safe_load(file.read_text())["providers"]:
            assert provider["options"]["path"] in mounts(grafana), file
    assert grafana["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"

    # Every bind mount's source is in the repository.
    for service in services.values():
        for source_mode in mounts(service).values():
            source = source_mode.rsplit(":", 1)[0]
            if source.startswith("/"):
                assert Path(source).exists(), source


@needs_compose
def test_each_secret_reaches_only_the_services_that_need_it(tmp_path: Path) -> None:
    services = compose_config(tmp_path, COMPOSE)["services"]
    for name, expected in SECRETS_SEEN_BY.items():
        seen = {s for s, body in services.items() if secret_value(name) in json.dumps(body)}
        assert seen == expected, name
        for body in services.values():  # in the environment only: not in a build or a label
            rest = {k: v for k, v in body.items() if k != "environment"}
            assert secret_value(name) not in json.dumps(rest), name


@needs_compose
def test_the_real_site_stack_names_a_missing_secret(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"set MQTT_OPERATOR_PASSWORD in \.env"):
        compose_config(tmp_path, COMPOSE, env={"MQTT_OPERATOR_PASSWORD": ""})


@needs_compose
def test_a_site_of_its_own_is_mounted_from_the_env_file(tmp_path: Path) -> None:
    site, profiles = tmp_path / "site.yaml", tmp_path / "profiles"
    gateway = compose_config(
        tmp_path,
        COMPOSE,
        env={"GUANJIA_SITE_FILE": str(site), "GUANJIA_PROFILES_DIR": str(profiles)},
    )["services"]["gateway"]
    assert mounts(gateway)["/etc/guanjia/site.yaml"] == f"{site}:ro"
    assert mounts(gateway)["/etc/guanjia/profiles"] == f"{profiles}:ro"


@needs_compose
def test_the_demo_override_runs_the_virtual_building_in_the_same_stack(tmp_path: Path) -> None:
    real = compose_config(tmp_path, COMPOSE)["services"]
    demo = compose_config(tmp_path, COMPOSE, DEMO)["services"]
    assert set(demo) == set(real)
    for name in ("mosquitto", "influxdb", "grafana"):
        assert mounts(demo[name]) == mounts(real[name])
        assert {**demo[name], "volumes": None} == {**real[name], "volumes": None}
    gateway = demo["gateway"]
    assert gateway["entrypoint"] == ["/bin/sh", "-c"]
    [script] = gateway["command"]
    steps = [shlex.split(step) for step in script.split("&&")]
    assert steps[0] == ["mkdir", "-p", "/var/lib/guanjia/demo"]
    assert steps[1][0] == "cp"
    assert steps[1][-1] == "/var/lib/guanjia/demo/"
    assert steps[2] == [
        "exec", "guanjia", "demo", "--site", "/var/lib/guanjia/demo/demo-site.yaml",
        "--no-view", "--influx", "http://influxdb:8086", "--org", "guanjia",
        "--bucket", "building", "--token-env", "INFLUX_TOKEN",
    ]  # fmt: skip
    # The files it copies are the ones the image carries (Dockerfile).
    copied = {Path(p).name for p in steps[1][1:-1]}
    assert copied == {Path(p).name for p in dockerfile_demo_files()}
    # The same hardening and volumes as the real site's gateway.
    for key in ("read_only", "tmpfs", "cap_drop", "security_opt", "environment"):
        assert gateway[key] == real["gateway"][key], key
    assert mounts(gateway) == mounts(real["gateway"])


def test_the_demo_files_the_image_carries_make_a_site_that_checks_where_it_is_copied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What docker-compose.demo.yml copies to the data volume is a whole site: it checks
    there, and everything the demo writes lands beside it, not in the (read-only) image."""
    demo = tmp_path / "var-lib-guanjia" / "demo"
    demo.mkdir(parents=True)
    for source in dockerfile_demo_files():
        shutil.copy(ROOT / source, demo)
    site = demo / "demo-site.yaml"
    assert guanjia(["check", str(site)]) == 0, capsys.readouterr().err
    # The demo names no broker: it brings its own (gateway/demo.py).
    loaded = load_site(site, mqtt=MqttConfig(brokers=[BrokerConfig(name="site", host="x")]))
    inside = tmp_path / "var-lib-guanjia"
    written = [
        loaded.spool_dir(),
        site.parent / loaded.site.alarms.store,
        *([site.parent / loaded.site.notify.outbox] if loaded.site.notify else []),
        *([site.parent / loaded.site.accounts.store] if loaded.site.accounts else []),
    ]
    for path in written:
        assert path.resolve().is_relative_to(inside), path


def test_the_docker_site_file_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """config/site.docker.yaml, which the real-site stack mounts by default, with the
    secrets compose gives the gateway; what it writes is on the data volume."""
    site = ROOT / "config/site.docker.yaml"
    monkeypatch.setenv("INFLUX_TOKEN", "x")
    monkeypatch.setenv("MQTT_GATEWAY_PASSWORD", "y")
    assert guanjia(["check", str(site)]) == 0, capsys.readouterr().err
    loaded = load_site(site)
    assert loaded.spool_dir() == Path("/var/lib/guanjia/spool")
    assert loaded.site.alarms.store.startswith("/var/lib/guanjia/")
    assert loaded.site.influxdb is not None
    assert loaded.site.influxdb.model_dump()["url"] == "http://influxdb:8086"
    assert loaded.site.mqtt is not None
    [broker] = loaded.site.mqtt.brokers
    assert (broker.host, broker.port, broker.username) == ("mosquitto", 1883, "guanjia")
    monkeypatch.delenv("MQTT_GATEWAY_PASSWORD")
    assert guanjia(["check", str(site)]) == 1
    assert "MQTT_GATEWAY_PASSWORD is not set" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The Dockerfile and .dockerignore


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def dockerfile_demo_files() -> list[str]:
    [line] = [
        rest
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and rest.endswith("/opt/guanjia/demo/")
    ]
    return line.split()[:-1]


def package_folders() -> set[str]:
    """The top-level folders of the packages pyproject.toml builds (a listed package or a
    find's include; a package mapped by package-dir comes from its folder)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools["packages"]
    names = packages if isinstance(packages, list) else packages["find"]["include"]
    mapped = setuptools.get("package-dir", {})
    tops = {name.rstrip("*").split(".")[0] for name in names}
    return {mapped.get(top, top) for top in tops} | {"config"}


def test_the_image_is_built_in_two_stages_from_the_pinned_set_and_runs_unprivileged() -> None:
    build, final = dockerfile_stages()
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in dockerfile_instructions()
    # Installed (not editable) with the constraints file the tests ran with.
    [install] = [rest for keyword, rest in build if keyword == "RUN" and "pip install" in rest]
    steps = [step.strip() for step in install.split("&&")]
    assert steps == [
        "PIP_CONSTRAINT=/src/constraints.txt "
        "python -m pip wheel --no-deps --wheel-dir /wheels /src",
        "python -m venv /opt/guanjia",
        "/opt/guanjia/bin/pip install --constraint /src/constraints.txt /wheels/guanjia-*.whl",
    ]
    assert ("COPY", "constraints.txt pyproject.toml README.md ./") in build
    # Every folder pyproject's packages come from is in what the image copies.
    copied = {rest.split()[0] for keyword, rest in build if keyword == "COPY"}
    assert package_folders() <= copied
    # The final stage: the venv only, a system user with a fixed non-zero uid, owning the
    # data directory, and the user set before the entry point.
    assert ("COPY", "--from=build /opt/guanjia /opt/guanjia") in final
    assert ("ARG", f"GUANJIA_UID={GATEWAY_UID}") in final
    [users] = [rest for keyword, rest in final if keyword == "RUN" and "useradd" in rest]
    assert '--uid "${GUANJIA_UID}"' in users
    assert "install -d -o guanjia -g guanjia -m 0750 /var/lib/guanjia" in users
    keywords = [keyword for keyword, _ in final]
    assert ("USER", "guanjia") in final
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert ("ENTRYPOINT", '["guanjia"]') in final
    assert ("CMD", '["run", "/etc/guanjia/site.yaml"]') in final
    [check] = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "gateway.healthcheck"]')
    port = healthcheck.DEFAULT_URL.split(":")[2].split("/")[0]
    assert ("EXPOSE", port) in final


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"TOKEN|PASSWORD|SECRET|KEY", rest, re.I), rest
        if keyword in ("COPY", "ADD"):
            assert ".env" not in rest.split()
    # Only the demo's public camera password is copied, for the demo.
    secrets = [p for p in dockerfile_demo_files() if "secret" in p]
    assert secrets == ["config/demo-camera.secret"]
    assert "public" in (ROOT / "config/demo-site.yaml").read_text()


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def ignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative to the context) out: the last pattern
    that matches it or a folder above it decides, `!` taking back."""
    result = False
    parts = Path(path).parts
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        bare = pattern.removeprefix("!").removeprefix("**/")
        hit = any(fnmatch("/".join(parts[: i + 1]), bare) for i in range(len(parts)))
        hit = hit or any(fnmatch(part, bare) for part in parts if pattern.startswith("**/"))
        if hit:
            result = not negate
    return result


def test_the_build_context_leaves_out_the_venv_history_caches_and_secrets() -> None:
    patterns = dockerignore_patterns()
    for needed in (".venv", ".git", ".env", "**/__pycache__", ".mypy_cache", ".ruff_cache"):
        assert needed in patterns, needed
    assert ignored(".venv/bin/python")
    assert ignored("gateway/__pycache__/cli.cpython-311.pyc")
    assert ignored(".env")
    # Nothing the Dockerfile copies is left out, and all of it is in the repository.
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert not ignored(source), source
                assert (ROOT / source).exists(), source


NO_NETWORK = ("Could not resolve host", "Temporary failure in name resolution", "unreachable")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's build stage run without Docker: its COPY lines into a context folder
    (what .dockerignore leaves out, left out), then its RUN line with the image's folders
    (/src, /wheels, /opt/guanjia) moved under a temporary root, and the final stage's copies
    of the demo files. PyPI is asked for the pinned dependencies."""
    root = tmp_path_factory.mktemp("image")
    build, _ = dockerfile_stages()

    def moved(text: str) -> str:
        return re.sub(r"(?<![\w/])/(src|wheels|opt/guanjia)\b", lambda m: f"{root}{m[0]}", text)

    for keyword, rest in build:
        if keyword == "COPY":
            *sources, target = rest.split()
            for source in sources:
                into = root / "src" / target
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source,
                        into,
                        ignore=lambda folder, names: [
                            n for n in names if ignored(str((Path(folder) / n).relative_to(ROOT)))
                        ],
                    )
                else:
                    into.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, into)
    [install] = [rest for keyword, rest in build if keyword == "RUN"]
    done = subprocess.run(
        ["sh", "-c", moved(install)],
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and any(n in done.stderr for n in NO_NETWORK):
        pytest.skip(f"PyPI not reachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    demo = root / "opt/guanjia/demo"
    demo.mkdir()
    for source in dockerfile_demo_files():
        shutil.copy(ROOT / source, demo)
    return root


def in_image(root: Path, *argv: str, env: dict[str, str] | None = None) -> Any:
    """A command of the installed venv, away from the checkout (nothing of it on sys.path)."""
    return subprocess.run(
        [str(root / "opt/guanjia/bin" / argv[0]), *argv[1:]],
        cwd=root,
        env={"PATH": f"{root}/opt/guanjia/bin:/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_image_build_steps_install_the_package_with_its_data(image_root: Path) -> None:
    where = in_image(image_root, "python", "-c", "import gateway, core.data_dir as d; "
                     "print(gateway.__file__); print(d.data_dir())")  # fmt: skip
    assert where.returncode == 0, where.stderr
    package, data = where.stdout.split()
    site_packages = str(image_root / "opt/guanjia/lib")
    assert package.startswith(site_packages)  # installed, not the checkout's
    assert data.startswith(site_packages)
    assert Path(data, "profiles", "eastron_sdm630.yaml").is_file()
    # The real site as compose mounts it, and the demo as its override copies it.
    etc = image_root / "etc/guanjia"
    etc.mkdir(parents=True)
    shutil.copy(ROOT / "config/site.docker.yaml", etc / "site.yaml")
    (etc / "profiles").mkdir()
    secrets = {"INFLUX_TOKEN": "x", "MQTT_GATEWAY_PASSWORD": "y"}
    done = in_image(image_root, "guanjia", "check", str(etc / "site.yaml"), env=secrets)
    assert done.returncode == 0, done.stderr
    data_volume = image_root / "var/lib/guanjia"
    (data_volume / "demo").mkdir(parents=True)
    for source in dockerfile_demo_files():
        shutil.copy(image_root / "opt/guanjia/demo" / Path(source).name, data_volume / "demo")
    done = in_image(image_root, "guanjia", "check", str(data_volume / "demo/demo-site.yaml"))
    assert done.returncode == 0, done.stderr


def test_the_health_check_of_the_installed_gateway(image_root: Path, tmp_path: Path) -> None:
    """The image's HEALTHCHECK command against the installed gateway running the docker site
    file (its database, broker and devices moved to closed loopback ports, its data folder
    and metrics port to the test's): healthy while it runs, unhealthy once it stopped."""
    text = (ROOT / "config/site.docker.yaml").read_text()
    metrics_port = free_port()
    moves = {
        "http://influxdb:8086": f"http://127.0.0.1:{free_port()}",
        "host: mosquitto, port: 1883": f"host: 127.0.0.1, port: {free_port()}",
        "/var/lib/guanjia/": f"{tmp_path}/data/",
        "{host: 0.0.0.0, port: 9108}": f"{{host: 127.0.0.1, port: {metrics_port}}}",
    }
    for old, new in moves.items():
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(r"host: 10\.0\.8\.\d+", lambda _: f"host: 127.0.0.1, port: {free_port()}", text)
    assert not re.search(r"host: (?!127\.0\.0\.1)", text)
    site = tmp_path / "etc/site.yaml"
    site.parent.mkdir()
    site.write_text(text)
    (site.parent / "profiles").mkdir()
    secrets = {"INFLUX_TOKEN": "x", "MQTT_GATEWAY_PASSWORD": "y"}
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert in_image(image_root, "python", "-m", "gateway.healthcheck", url).returncode == 1
    log = tmp_path / "gateway.log"
    with log.open("w") as stderr:
        gateway = subprocess.Popen(
            [str(image_root / "opt/guanjia/bin/guanjia"), "run", str(site)],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", **secrets},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                check = in_image(image_root, "python", "-m", "gateway.healthcheck", url)
                if check.returncode == 0:
                    break
                assert gateway.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, check.stderr
                time.sleep(0.5)
            assert check.stdout.strip() == f"healthy: {url}"
        finally:
            gateway.terminate()  # what docker stop sends
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait()
                said = log.read_text()[-3000:]
                raise AssertionError(f"no stop on SIGTERM in 30 s: {said}") from None
    assert gateway.returncode == 0, log.read_text()[-3000:]
    after = in_image(image_root, "python", "-m", "gateway.healthcheck", url, "--timeout", "2")
    assert after.returncode == 1
    assert "no answer" in after.stderr


# ---------------------------------------------------------------------------------------------
# Mosquitto: the shipped config, password script and ACL on Debian's broker


def shipped_conf(port: int, data: Path) -> str:
    """config/mosquitto/mosquitto.conf with the container's paths moved to `data` and the
    repository, its listener on a free loopback port; every other line as shipped."""
    text = (ROOT / "config/mosquitto/mosquitto.conf").read_text()
    moves = {
        "listener 1883\n": f"listener {port} 127.0.0.1\n",
        "/mosquitto/data/": f"{data}/",
        "/mosquitto/config/acl": str(ROOT / "config/mosquitto/acl"),
    }
    for old, new in moves.items():
        assert old in text, old
        text = text.replace(old, new)
    assert not re.search(r"\s/mosquitto/", text)
    # Started as root, mosquitto would switch to its own user, who cannot read the test's
    # folders; the container's image starts it as that user already.
    return text + f"user {os.environ.get('USER') or 'root'}\n"


class ShippedMosquitto(MosquittoServer):
    def _prepare(self) -> None:
        self.config_path.write_text(shipped_conf(self.port, self.data_dir))


PASSWORDS = {
    "MQTT_GATEWAY_PASSWORD": "gw pass $1 'x'",  # shell metacharacters survive
    "MQTT_OPERATOR_PASSWORD": "-operator-secret",
    "MQTT_DEVICES_PASSWORD": "devices-secret",
}


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[ShippedMosquitto]:
    data = tmp_path / "mosquitto"
    data.mkdir()
    done = subprocess.run(
        ["sh", str(ROOT / "config/mosquitto/passwords.sh"), str(data / "passwd")],
        env={**os.environ, **PASSWORDS},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    with ShippedMosquitto(data) as server:
        yield server


class Peer:
    """A paho client that keeps what it receives."""

    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{port}")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(5)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = reason
        self.connected.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.lock:
            self.received.append((message.topic, bytes(message.payload)))

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [topic for topic, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(peer: Peer, topic: str, timeout: float = 5.0) -> None:
    deadline = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if topic in peer.topics():
            return
        deadline.wait(0.05)
    raise AssertionError(f"{topic} never arrived; got {peer.topics()}")


def test_the_shipped_broker_refuses_anonymous_and_wrong_passwords(
    shipped_broker: ShippedMosquitto,
) -> None:
    for user, password in [(None, None), ("guanjia", "wrong"), ("nobody", "x")]:
        peer = Peer(shipped_broker.port, user, password)
        peer.close()
        assert peer.refused is not None, user
    for user, variable in [("guanjia", "GATEWAY"), ("operator", "OPERATOR")]:
        peer = Peer(shipped_broker.port, user, PASSWORDS[f"MQTT_{variable}_PASSWORD"])
        peer.close()
        assert peer.refused is None, user
    log = shipped_broker.log_path.read_text()
    assert "not authorised" in log  # connection_messages: refusals are logged


def test_the_shipped_acl_lets_each_user_do_its_part_only(
    shipped_broker: ShippedMosquitto,
) -> None:
    port = shipped_broker.port
    gateway = Peer(port, "guanjia", PASSWORDS["MQTT_GATEWAY_PASSWORD"])
    operator = Peer(port, "operator", PASSWORDS["MQTT_OPERATOR_PASSWORD"])
    devices = Peer(port, "devices", PASSWORDS["MQTT_DEVICES_PASSWORD"])
    try:
        gateway.subscribe("#")
        operator.subscribe("guanjia/#")
        devices.subscribe("zigbee2mqtt/#")
        devices.subscribe("guanjia/#")
        # Devices publish their own topics; the gateway reads them.
        devices.publish("zigbee2mqtt/room-301", '{"temperature": 26.5}')
        wait_for(gateway, "zigbee2mqtt/room-301")
        wait_for(devices, "zigbee2mqtt/room-301")
        # The gateway publishes its own tree; the operator reads it, the devices do not.
        gateway.publish("guanjia/city-hall/status", "online", retain=True)
        gateway.publish("guanjia/city-hall/ac-301/state", '{"setpoint_degc": 26}')
        wait_for(operator, "guanjia/city-hall/ac-301/state")
        # A device may not write a control topic, nor the gateway's own tree; the operator
        # may. The broker routes in order: the operator's command comes after anything of
        # the device's that got through.
        control = [
            "guanjia/city-hall/ac-301/setpoint_degc/set",
            "guanjia/city-hall/alarm/a-1/ack",
            "guanjia/city-hall/status",
        ]
        for topic in control:
            devices.publish(topic, "29")
        operator.publish("guanjia/city-hall/ac-301/setpoint_degc/set", "26")
        operator.publish("guanjia/city-hall/alarm/a-1/ack", "{}")
        wait_for(gateway, "guanjia/city-hall/alarm/a-1/ack")
        got = [(t, p) for t, p in gateway.received if t in control]
        assert got == [
            ("guanjia/city-hall/status", b"online"),
            ("guanjia/city-hall/ac-301/setpoint_degc/set", b"26"),
            ("guanjia/city-hall/alarm/a-1/ack", b"{}"),
        ]
        # The operator may not pose as a device, nor publish the gateway's state.
        operator.publish("zigbee2mqtt/room-301", '{"temperature": 99}')
        operator.publish("guanjia/city-hall/ac-301/state", '{"setpoint_degc": 16}')
        devices.publish("tele/plug-1/SENSOR", "{}")
        wait_for(gateway, "tele/plug-1/SENSOR")
        assert gateway.topics().count("zigbee2mqtt/room-301") == 1
        assert gateway.topics().count("guanjia/city-hall/ac-301/state") == 1
        # The devices saw none of the gateway's tree.
        assert not [t for t in devices.topics() if t.startswith("guanjia/")]
    finally:
        for peer in (gateway, operator, devices):
            peer.close()


def test_the_shipped_broker_keeps_retained_state_across_a_restart(
    shipped_broker: ShippedMosquitto,
) -> None:
    port = shipped_broker.port
    gateway = Peer(port, "guanjia", PASSWORDS["MQTT_GATEWAY_PASSWORD"])
    gateway.publish("guanjia/city-hall/alarm/a-7", '{"state": "raised"}', retain=True)
    gateway.close()
    shipped_broker.stop()  # by its pid; it saves at shutdown (persistence true)
    assert (shipped_broker.data_dir / "mosquitto.db").exists()
    shipped_broker.start()
    operator = Peer(port, "operator", PASSWORDS["MQTT_OPERATOR_PASSWORD"])
    try:
        operator.subscribe("guanjia/city-hall/alarm/#")
        wait_for(operator, "guanjia/city-hall/alarm/a-7")
    finally:
        operator.close()


def test_the_password_script_writes_a_private_hashed_file_and_keeps_it_on_failure(
    tmp_path: Path,
) -> None:
    passwd = tmp_path / "passwd"
    script = ["sh", str(ROOT / "config/mosquitto/passwords.sh"), str(passwd)]
    done = subprocess.run(script, env={**os.environ, **PASSWORDS}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = passwd.read_text()
    assert passwd.stat().st_mode & 0o077 == 0
    assert [line.split(":")[0] for line in text.splitlines()] == ["guanjia", "operator", "devices"]
    for secret in PASSWORDS.values():
        assert secret not in text
    missing = {**os.environ, **PASSWORDS, "MQTT_DEVICES_PASSWORD": ""}
    done = subprocess.run(script, env=missing, capture_output=True, text=True)
    assert done.returncode != 0
    assert "MQTT_DEVICES_PASSWORD" in done.stderr
    assert passwd.read_text() == text  # the previous file is whole
    assert not (tmp_path / "passwd.new").exists()


# ---------------------------------------------------------------------------------------------
# InfluxDB 2: the DBRP init script


INIT_SCRIPT = ROOT / "config/influxdb/init/dbrp.sh"


def fake_influx(tmp_path: Path) -> Path:
    """An `influx` that records its arguments, one per line, and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    influx = bin_dir / "influx"
    influx.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {tmp_path}/influx.calls\n')
    influx.chmod(0o755)
    return bin_dir


def test_the_init_script_is_executable_and_clean_shell() -> None:
    # The image runs the *.sh files of /docker-entrypoint-initdb.d that are executable.
    assert os.access(INIT_SCRIPT, os.X_OK)
    staged = subprocess.run(
        ["git", "ls-files", "-s", str(INIT_SCRIPT)], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert staged == "" or staged.startswith("100755"), staged  # committed executable
    for script in (INIT_SCRIPT, ROOT / "config/mosquitto/passwords.sh"):
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
        if SHELLCHECK is not None:
            done = subprocess.run([SHELLCHECK, "-s", "sh", str(script)], capture_output=True)
            assert done.returncode == 0, done.stdout


@needs_compose
def test_the_init_script_maps_the_influxql_database_onto_the_bucket(tmp_path: Path) -> None:
    """With the environment docker-compose gives the influxdb service and the bucket id its
    image exports after setup, the script asks the influx CLI for exactly one mapping:
    InfluxQL building/autogen onto the bucket, the default for building."""
    service = compose_config(tmp_path, COMPOSE)["services"]["influxdb"]
    env = {
        "PATH": f"{fake_influx(tmp_path)}:{os.environ['PATH']}",
        **service["environment"],
        "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0f1e2d3c4b5a6978",
    }
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "influx.calls").read_text().splitlines()
    assert calls == [
        "v1", "dbrp", "create", "--org", "guanjia", "--bucket-id", "0f1e2d3c4b5a6978",
        "--db", "building", "--rp", "autogen", "--default",
    ]  # fmt: skip
    # The database the Grafana data source queries is the mapped one.
    datasources = yaml.safe_load(
        (ROOT / "config/grafana/provisioning/datasources/influxdb.yaml").read_text()
    )
    [source] = datasources["datasources"]
    assert source["jsonData"]["dbName"] == "building"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "http://influxdb:8086"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"


def test_the_init_script_stops_without_the_bucket_id(tmp_path: Path) -> None:
    env = {
        "PATH": f"{fake_influx(tmp_path)}:{os.environ['PATH']}",
        "DOCKER_INFLUXDB_INIT_ORG": "guanjia",
        "DOCKER_INFLUXDB_INIT_BUCKET": "building",
    }
    done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "DOCKER_INFLUXDB_INIT_BUCKET_ID" in done.stderr
    assert not (tmp_path / "influx.calls").exists()


# ---------------------------------------------------------------------------------------------
# The health check


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"guanjia_up 1\n")

    def log_message(self, *_: Any) -> None:
        pass


def test_the_health_check_answers_for_the_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # never asked
        assert healthcheck.main([url]) == 0
        monkeypatch.setenv(healthcheck.URL_VARIABLE, url)
        assert healthcheck.main([]) == 0
        _Answer.status = 503
        assert healthcheck.main([url]) == 1
        assert f"unhealthy: {url} answered HTTP 503" in capsys.readouterr().err
    finally:
        _Answer.status = 200
        server.shutdown()
        server.server_close()
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    assert healthcheck.main([closed, "--timeout", "2"]) == 1
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert f"no answer from {closed}" in said


# ---------------------------------------------------------------------------------------------
# README


@needs_compose
def test_readme_compose_commands_run(tmp_path: Path) -> None:
    """The commands of README.md's "docker-compose" section, verbatim, in a copy of the
    compose files with an .env made from .env.example. The commands that need an engine
    (`docker compose up`) stand in its prose, outside any command block."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## docker-compose\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) >= 2, "README.md lost its compose commands"
    assert not [c for c in commands if not c.startswith("docker-compose ")], commands
    assert "docker compose up -d" in section
    for file in (COMPOSE, DEMO):
        shutil.copy(file, tmp_path)
    (tmp_path / ".env").write_text(
        "".join(f"{name}={secret_value(name)}\n" for name in SECRETS_SEEN_BY)
    )
    for command in commands:
        done = subprocess.run(
            shlex.split(command),
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
    # Without the secrets the same commands refuse, naming one.
    (tmp_path / ".env").write_text("")
    done = subprocess.run(
        shlex.split(commands[0]),
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "in .env" in done.stderr

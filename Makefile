# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBS   := mosquitto mosquitto-clients influxdb victoria-metrics openssl socat chromium chromium-driver \
          poppler-utils fonts-wqy-zenhei docker-compose shellcheck systemd python3-venv
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck unit bench servers clean wheel constraints

# The runtime dependencies at the versions the tests ran with (constraints.txt); the test
# tools as pip finds them.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/guanjia demo

# The wheel an edge box installs (README.md, "Install on an edge box"), in dist/; built from
# a clean build/ (setuptools would pack files left there by an earlier build).
wheel: $(STAMP)
	rm -rf build dist
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# After a deliberate upgrade in the venv, and a test run: the new set becomes the pinned one.
constraints: $(STAMP)
	$(PY) tools/constraints.py > constraints.txt

# Debian's servers for the tests (InfluxDB 1.x, VictoriaMetrics, Mosquitto), the headless
# browser that drives the duty console and opens the report, the report's CJK font,
# poppler's pdftoppm (the tests render the PDF report to PNG), and docker-compose (v1: it
# validates the compose files; no Docker engine runs here) and shellcheck for the stack's
# scripts, systemd's tools (systemd-analyze verify, systemd-sysusers --root check the unit
# and its user) and python3-venv (the install test builds a fresh venv), when missing.
servers:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check core gateway drivers rules simulator accounts tests bench tools
	$(VENV)/bin/ruff format --check core gateway drivers rules simulator accounts tests bench tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) servers
	$(PY) -m pytest -m "not soak" -q

test: lint typecheck unit

BENCH_STAMP := $(VENV)/.installed-bench

# The bench extra (what only the benchmarks import) and Mosquitto with its clients.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --constraint constraints.txt -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) servers
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var build dist *.egg-info

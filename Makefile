# Backroom: `make run` runs the demo store; `make chain` the demo chain (HQ and two stores); `make test` runs
# the whole suite. All install what they need on a fresh Debian-family machine (as root, or with sudo).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export BACKROOM_DATA ?= ./var/demo
export BACKROOM_PORT ?= 8080
export BACKROOM_MQTT_PORT ?= 1883
export BACKROOM_STORE ?= demo-001

.PHONY: run chain test venv system-packages test-packages clean

run: $(STAMP) system-packages
	@$(PY) -m edge.run_demo

# The demo chain: a demo HQ (console at :8090/hq/ui) and stores demo-001 (:8080) and demo-002 (:8081), paired,
# with their simulated devices; data in BACKROOM_CHAIN_DATA (./var/chain). See edge/run_chain.py.
chain: $(STAMP) system-packages
	@$(PY) -m edge.run_chain

# The suite runs in three processes (pytest-xdist), a test file per process: most tests wait on real HQ and hub
# processes, so the CPU sits half idle with two workers on a 2-core box; a third keeps both cores busy.
test: $(STAMP) system-packages test-packages
	$(PY) -m ruff check edge hq_sync devices tests
	$(PY) -m mypy
	$(PY) -m pytest -q -n 3 --dist loadfile tests

venv: $(STAMP)

# Debian's python3 lacks venv/ensurepip unless python3-venv is installed: install it when missing.
$(VENV)/bin/python:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
		echo "installing python3-venv"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; \
	fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Mosquitto from the OS packages (the device hub manages its own instance of it).
system-packages:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing mosquitto"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients; \
		$(SUDO) systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
		$(SUDO) service mosquitto stop >/dev/null 2>&1 || true; \
	fi

# PostgreSQL server binaries for the HQ back-end tests (they start a private cluster; no service);
# Debian's Chromium for the tablet UI's browser tests (Playwright drives it; it never downloads a browser).
test-packages:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "installing postgresql"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		$(SUDO) systemctl disable --now postgresql >/dev/null 2>&1 || true; \
		$(SUDO) service postgresql stop >/dev/null 2>&1 || true; \
	fi
	@if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then \
		echo "installing chromium (browser tests; CJK fonts for screenshots)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache

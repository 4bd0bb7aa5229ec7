# Two entry points (see README): `make dev` runs the gateway in dev mode, `make test` runs every check and test.
# Both install what they need first (a .venv and node_modules in this folder).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: dev test install bench services

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[server,test]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Redis store's tests run a real redis-server, the shared journal's a real PostgreSQL (Debian's packages).
services:
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { apt-get update && apt-get install -y postgresql; }

install: $(VENV)/.installed node_modules/.installed

dev: install
	$(PY) -m examples.gateway.dev

# Lint, format and type checks first (each names the files that fail), then the tests. mypy's file list and
# strictness are in pyproject.toml ([tool.mypy]); ruff skips .venv and node_modules.
test: install services
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -p no:cacheprovider

# peers.py installs the LiteLLM proxy and the Portkey gateway into ~/.cache/x402_middleware/peers on its first run
# (that run needs PyPI and the npm registry); later runs are offline.
bench: install
	$(PY) benchmarks/verify.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/http_compare.py
	$(PY) benchmarks/http_clients.py
	$(PY) benchmarks/gateway.py
	$(PY) benchmarks/peers.py

# The two commands: `make run` and `make test`. Everything installs into .venv from the locks.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
ANVIL_VERSION := 1.7.1
ANVIL := .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
PORT ?= 8000
# Test workers in parallel: many tests wait on a browser, an agent, a chain or the Docker engine,
# so twice the cores keeps them busy (override: make test TEST_WORKERS=1).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
# Tests that time real processes against each other (marked `serial`) run after the others, one a
# core: most of their time is spent waiting on an agent's period or a browser, not on the CPU.
SERIAL_WORKERS ?= $(shell nproc)

.PHONY: run test test-fast lint lock audit bench bench-agent bench-load clean tools gpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.base-installed: requirements/base.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements/base.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements/dev.lock $(VENV)/.base-installed
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements/dev.lock
	touch $@

## The agent's GPU prover (CUDA PyTorch, several GB): provider hosts with NVIDIA GPUs. Its tests
## (tests/protocol/test_proof_torch.py) run wherever it is installed, on the CPU without a GPU.
$(VENV)/.gpu-installed: requirements/gpu.lock $(VENV)/.base-installed
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements/gpu.lock
	touch $@

gpu: $(VENV)/.gpu-installed

## Serve on embedded defaults with demo data (SQLite, in-memory channels, local Celery transport).
run: $(VENV)/.base-installed
	PORT=$(PORT) scripts/run.sh

## Test-only programs from the npm registry: Anvil (an Ethereum node) for the chain tests.
$(ANVIL):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix .tools --no-save --no-package-lock --no-audit --no-fund --silent \
	    @foundry-rs/anvil-linux-amd64@$(ANVIL_VERSION); \
	else echo "npm not found: the Anvil tests will be skipped"; fi

tools: $(ANVIL)

## Lint, Django checks, migrations check, layer contracts, the type checker, then the test suite.
test: $(VENV)/.dev-installed tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(BIN)/python manage.py check --fail-level WARNING
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/lint-imports
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(BIN)/mypy
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(BIN)/python manage.py chain_compile --check
	export TEST_RUN=$${TEST_RUN:-$$$$}; export REDIS_KEY_PREFIX=$${REDIS_KEY_PREFIX:-gpumarket-test-$$TEST_RUN}; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS); first=$$?; \
	$(BIN)/pytest -n $(SERIAL_WORKERS) --dist worksteal -m serial $(PYTEST_ARGS); second=$$?; \
	for code in $$first $$second; do [ $$code -eq 0 ] || [ $$code -eq 5 ] || exit $$code; done; \
	[ $$first -eq 0 ] || [ $$second -eq 0 ]

## The inner loop: the tests, in parallel, without the checks before them and without those that
## time real processes (the fault matrix, the browser journeys, the agent's runs); PYTEST_ARGS narrows.
test-fast: $(VENV)/.dev-installed
	TEST_RUN=$${TEST_RUN:-$$$$} REDIS_KEY_PREFIX=$${REDIS_KEY_PREFIX:-gpumarket-test-$$$$} $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal \
		-m "not serial and not slow" $(PYTEST_ARGS)

## Known vulnerabilities in the pinned dependencies (the server's and the agent's), but those
## triaged in requirements/audit-ignore.txt; anything that cannot be audited fails too.
AUDIT_IGNORES = $(foreach id,$(shell sed -e 's/\#.*//' requirements/audit-ignore.txt),--ignore-vuln $(id))
audit: $(VENV)/.dev-installed
	$(BIN)/pip-audit --strict --disable-pip --require-hashes --progress-spinner off \
		-r requirements/base.lock -r requirements/agent.lock $(AUDIT_IGNORES)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Re-resolve the locks after editing requirements/*.in.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/base.in -o requirements/base.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/dev.in -o requirements/dev.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/gpu.in -o requirements/gpu.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes requirements/agent.in -o requirements/agent.lock

## The auction benchmark (needs DATABASE_URL pointing at PostgreSQL).
bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/auction.py

## The agent benchmark (needs DATABASE_URL at PostgreSQL, REDIS_URL and a Docker engine).
bench-agent: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/agent.py

## The load benchmark (needs DATABASE_URL at PostgreSQL and REDIS_URL): Locust, 1,000 agents.
bench-load: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/load/run.py

clean:
	rm -rf $(VENV) .tools var db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .ruff_cache

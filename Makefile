# The two commands a newcomer needs: `make serve` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench protos clean

# setup.py and the .pyx files: the compiled parts are rebuilt when their source changes.
$(BIN)/.installed: pyproject.toml setup.py $(wildcard service/onnet_server/core/*.pyx)
	PYTHON=$(PYTHON) sh scripts/ensure-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Start the service on the embedded in-memory registry at 127.0.0.1:50051.
serve: $(BIN)/.installed
	$(BIN)/onnet serve --dev

## Lint, type-check and run the whole test suite (benchmarks run once as smoke tests).
test: $(BIN)/.installed lint
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Run the benchmarks at full size; see bench/README.md.
bench: $(BIN)/.installed
	ONNET_BENCH_USERS=$${ONNET_BENCH_USERS:-1000000} $(BIN)/pytest bench --benchmark-enable -s --timeout 1800

## Regenerate the committed stubs in client/onnet/v1 from proto/.
protos: $(BIN)/.installed
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

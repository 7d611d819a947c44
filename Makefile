# geartrain: `make serve` and `make test` set everything up on a fresh clone (python3, make, apt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: setup peers serve test lint bench bench-quick demo clean

$(STAMP): pyproject.toml scripts/setup-venv
	scripts/setup-venv $(PY) $(VENV)
	touch $(STAMP)

setup: $(STAMP)

peers:
	scripts/install-peers

serve: setup
	$(BIN)/geartrain serve $(ARGS)

test: setup peers
	$(BIN)/ruff check .
	$(BIN)/pytest $(ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup peers
	$(BIN)/python bench/run.py $(ARGS)

bench-quick: setup peers
	$(BIN)/python bench/run.py --quick $(ARGS)

demo: setup
	$(BIN)/python examples/demo.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache bench/build

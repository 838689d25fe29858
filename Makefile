# EdgeFarm: the two set-up commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint compat venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m server.demo

lint: $(STAMP)
	$(BIN)/ruff check .

# agent/ and shared/ must run on Python 3.9 (devices run old distributions).
compat: $(STAMP)
	$(BIN)/vermin --target=3.9- --no-tips --violations --eval-annotations --backport dataclasses shared agent cli

test: lint compat
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) edgefarm-data .pytest_cache

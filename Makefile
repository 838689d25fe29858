# EdgeFarm: the two set-up commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint compat compat39 venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job needs no test or TensorFlow packages: a lighter install of its own.
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,agent,cli,tools]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m edgefarm.cli.demo

# ruff, then the import contracts of pyproject.toml (imports flow one way:
# contract <- formats <- datasets <- {server, agent} <- tools <- {cli, main job}).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# agent/, shared/ and cli/ must run on Python 3.9 (devices run old distributions):
# vermin checks the syntax and library calls, and when a Python 3.9 interpreter is
# present the unit tests run on it too (the acceptance suite also runs an agent on it).
PY39 ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9) /usr/bin/python3.9 \
           /usr/local/bin/python3.9; do [ -x $$p ] && $$p -c '' 2>/dev/null && echo $$p && break; done)
VENV39 ?= .venv39
STAMP39 := $(VENV39)/.installed

$(STAMP39): pyproject.toml
	test -x $(VENV39)/bin/python || $(PY39) -m venv $(VENV39)
	$(VENV39)/bin/python -m pip install --quiet --upgrade pip
	$(VENV39)/bin/python -m pip install --quiet -e '.[agent,cli]' pytest flatbuffers
	touch $(STAMP39)

compat: $(STAMP)
	$(BIN)/vermin --target=3.9- --no-tips --violations --eval-annotations --backport dataclasses shared agent cli tools
	@if [ -n "$(PY39)" ]; then $(MAKE) --no-print-directory compat39; \
	 else echo "no Python 3.9 interpreter found: only vermin checked 3.9 compatibility"; fi

compat39: $(STAMP39)
	$(VENV39)/bin/python -m pytest tests/unit -q -p no:cacheprovider

# Two workers, each taking whole test files (module fixtures are built once per file); the
# 25 slowest tests are printed at the end. Tests marked `alone` compare timings of two
# measurements and need the machine to themselves: they run after the others, one at a time.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25

test: lint compat
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not alone"
	$(BIN)/python -m pytest -m alone --durations=5

clean:
	rm -rf $(VENV) $(VENV39) edgefarm-data .pytest_cache

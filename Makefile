# The two set-up commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
VENV310 ?= .venv310

.PHONY: demo test lint types pytest pytest310 install bench bench-quick clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python examples/quickstart.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(BIN)/.installed
	$(BIN)/mypy --strict

pytest: $(BIN)/.installed
	$(BIN)/pytest -q

# Where pyenv's 3.10 is on the machine, the suite runs on it too (the oldest supported Python).
$(VENV310)/bin/.installed: pyproject.toml
	$(PY310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q --upgrade pip
	$(VENV310)/bin/python -m pip install -q -e '.[dev]'
	touch $@

pytest310:
ifneq ($(PY310),)
	$(MAKE) $(VENV310)/bin/.installed
	$(VENV310)/bin/pytest -q 
else
	@echo "pytest310: no Python 3.10 on this machine; skipped"
endif

test: lint types pytest pytest310

# Benchmarks run in their own virtualenv with the peers (pywa, heyoo, whatsapp-python).
VENV_BENCH ?= .venv-bench
BENCH := $(VENV_BENCH)/bin

$(BENCH)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_BENCH)
	$(BENCH)/python -m pip install -q --upgrade pip
	$(BENCH)/python -m pip install -q -e '.[fast,bench]'
	-$(BENCH)/python -m pip install -q pywa
	-$(BENCH)/python -m pip install -q heyoo
	-$(BENCH)/python -m pip install -q whatsapp-python
	touch $@

bench: $(BENCH)/.installed
	$(BENCH)/python benchmarks/run.py

bench-quick: $(BENCH)/.installed
	$(BENCH)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) $(VENV310) $(VENV_BENCH) .mypy_cache .ruff_cache

# The two set-up commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
VENV310 ?= .venv310

# The development environments are installed from uv.lock, so every fresh clone gets the same
# versions. uv itself comes from PyPI through pip, pinned, in a virtualenv of its own (a venv
# that `uv sync` manages would uninstall uv). `--locked` fails when uv.lock no longer matches
# pyproject.toml: run `make lock` after changing a dependency.
UV_VERSION := 0.13.9
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.uv-$(UV_VERSION)
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint types pytest pytest310 cov docs dist-check install lock bench bench-quick bench-n8n reliability clean

$(UV_STAMP):
	rm -rf $(UV_VENV)
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	touch $@

$(BIN)/.installed: pyproject.toml uv.lock | $(UV_STAMP)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --locked --python $(PYTHON) --extra dev --extra docs
	touch $@

install: $(BIN)/.installed

lock: $(UV_STAMP)
	$(UV) lock

demo: $(BIN)/.installed
	$(BIN)/python examples/quickstart.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/codespell .
	$(BIN)/validate-pyproject pyproject.toml
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml

types: $(BIN)/.installed
	$(BIN)/mypy --strict

pytest: $(BIN)/.installed
	$(BIN)/pytest -q

# The 3.11 run of the suite, measured: branch coverage of src/wa_auth, [tool.coverage] in
# pyproject.toml (fail_under). `make test` runs the suite this way, not twice.
cov: $(BIN)/.installed
	rm -rf build/coverage
	mkdir -p build/coverage
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

# Where pyenv's 3.10 is on the machine, the suite runs on it too (the oldest supported Python),
# but for the tests marked `once`: the end-to-end runs through a real n8n and through fleets of
# worker processes, which check n8n and process fleets more than the Python they run on, and
# would take CI past its 40 minutes if run twice. The 3.11 run (`cov`) runs every test.
$(VENV310)/bin/.installed: pyproject.toml uv.lock | $(UV_STAMP)
	UV_PROJECT_ENVIRONMENT=$(VENV310) $(UV) sync -q --locked --python $(PY310) --extra dev
	touch $@

pytest310:
ifneq ($(PY310),)
	$(MAKE) $(VENV310)/bin/.installed
	$(VENV310)/bin/pytest -q -m "not once"
else
	@echo "pytest310: no Python 3.10 on this machine; skipped"
endif

# The site of README.md, docs/ and the API reference (mkdocs.yml), built strict: a broken link,
# a missing page or a stale name in a docstring fails. The site is build/site.
docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict --quiet

# Builds the sdist and, from it, the wheel; installs the wheel in a fresh virtualenv and checks
# the import, `wa-auth --version` and py.typed there.
dist-check: $(BIN)/.installed
	$(BIN)/python scripts/check_dist.py --uv $(UV)

test: lint types cov pytest310 docs dist-check

# The long forms of the reliability trials (crash trials, the soak, fuzzing, hostile peers);
# rewrites docs/reliability.md from what this run measured. Their short forms run in `make test`.
reliability: $(BIN)/.installed
	$(BIN)/python scripts/reliability.py

# Benchmarks run in their own virtualenv with the peers (pywa, heyoo, whatsapp-python).
VENV_BENCH ?= .venv-bench
BENCH := $(VENV_BENCH)/bin

$(BENCH)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_BENCH)
	$(BENCH)/python -m pip install -q --upgrade pip
	$(BENCH)/python -m pip install -q -e '.[fast,bench,redis]'
	-$(BENCH)/python -m pip install -q pywa
	-$(BENCH)/python -m pip install -q heyoo
	-$(BENCH)/python -m pip install -q whatsapp-python
	touch $@

bench: $(BENCH)/.installed
	$(BENCH)/python benchmarks/run.py

bench-quick: $(BENCH)/.installed
	$(BENCH)/python benchmarks/run.py --quick

# The wa_auth n8n node against an HTTP Request node per item and a Code node posting batches:
# 1,000 items in one execution of the real n8n (tests/n8n/, installed and cached on first use),
# serve in front of the harness's nginx peer; prints one JSON line (rows, CPU, ratios).
bench-n8n: $(BIN)/.installed
	bash tests/n8n/ensure.sh >/dev/null
	$(BIN)/python tests/n8n/bench_node.py --items 1000

clean:
	rm -rf $(VENV) $(VENV310) $(VENV_BENCH) $(UV_VENV) build dist .mypy_cache .ruff_cache

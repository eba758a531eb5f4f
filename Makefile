# Two entry points: `make demo` and `make test` (`make test-fast`: the suite minus tests marked slow). Both build .venv/ from uv.lock first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV_BOOT := .uv-boot
UV := $(UV_BOOT)/bin/uv
VENV := .venv
# The Spark extra (~480 MB, ~26 s once with a cold uv cache) so `make test` runs the Spark equality test;
# `make demo EXTRAS=` skips it.
EXTRAS ?= --extra spark
export UV_PYTHON_DOWNLOADS := never
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
# Keep compiled bytecode (some shells set PYTHONDONTWRITEBYTECODE): every server a test starts imports BentoML and
# MLflow afresh, ~4 s of CPU each without it. The cache lives in .pycache/, not beside the sources (and not in
# .venv: the uv bootstrap compiles before .venv exists, and uv refuses a .venv that is not an environment).
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(CURDIR)/.pycache
# Two pytest workers (pytest-xdist), one test module per worker at a time (--dist loadfile: a module's fixtures
# and servers stay in one process): most of the suite waits on servers, subprocesses and databases, so two
# workers on two cores take about 55% of the serial time. `make test PYTEST_WORKERS=0` runs it serially.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: demo test test-fast lint venv bench clean

$(UV):
	$(PYTHON) -m venv $(UV_BOOT)
	$(UV_BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen $(EXTRAS) --python $(PYTHON)
	touch $@

venv: $(VENV)/.synced

demo: venv
	$(VENV)/bin/cxpredict demo

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q $(PYTEST_PARALLEL)

test-fast: venv
	$(VENV)/bin/pytest -q $(PYTEST_PARALLEL) -m "not slow"

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: venv
	$(VENV)/bin/python benchmarks/feature_pipeline.py

clean:
	rm -rf $(VENV) $(UV_BOOT) .pycache demo-data .cxpredict mlruns mlflow.db

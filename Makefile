# The web service: `make install serve` starts it on the committed model,
# `make test` runs every test (the browser test included).
PYTHON ?= python3

.PHONY: install serve test lint chromium

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

lint:
	ruff check .

# LayerLift: the two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Pinned so that the test set-up installs the small CPU wheel (see README, "Tests").
TORCH_TEST_PIN := torch==2.13.0

.PHONY: demo test lint clean examples bench

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e '.[dev]'
	touch $@

demo: $(VENV)/.base
	@mkdir -p out
	$(VENV)/bin/layerlift decompose examples/poster.png -o out/poster.psd --backend classic

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

examples: $(VENV)/.base
	$(PY) examples/make_examples.py

bench: $(VENV)/.dev
	$(PY) bench/quality.py --backend classic

clean:
	rm -rf $(VENV) out build dist *.egg-info

# LayerLift: the two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The test set-up pins the torch/torchvision pair that installs from this machine's local disk
# (the Qwen processor needs torchvision); any other spec would download gigabytes.
TORCH_TEST_PINS := torch==2.14.1 torchvision==0.29.1
# torchao declares no torch requirement yet each release supports only a window of torch
# versions: pin the one checked against the pair above.
QUANT_TEST_PINS := torchao==0.18.0

.PHONY: demo test lint clean examples bench dist test-dist

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install $(TORCH_TEST_PINS) $(QUANT_TEST_PINS)
	$(PIP) install -e '.[dev,qwen,quant,desktop]'
	touch $@

demo: $(VENV)/.base
	@mkdir -p out
	$(VENV)/bin/layerlift decompose examples/poster.png -o out/poster.psd --backend classic

test: $(VENV)/.dev
	bash tests/install_system_deps.sh
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

examples: $(VENV)/.base
	$(PY) examples/make_examples.py

bench: $(VENV)/.dev
	$(PY) bench/quality.py --backend classic

# The one-folder desktop bundle, `cpu` flavour (no torch), in dist/layerlift/; reused when
# nothing changed. The `gpu` flavour: docs/packaging.md.
dist: $(VENV)/.dev
	$(PY) packaging/build.py --flavour cpu

# Build (or reuse) the bundle and smoke-test the frozen executable; `make test` runs it too.
test-dist: $(VENV)/.dev
	bash tests/install_system_deps.sh
	$(PY) -m pytest tests/test_dist.py

clean:
	rm -rf $(VENV) out build dist *.egg-info

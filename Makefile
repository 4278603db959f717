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
# Extra pytest arguments for the test targets, e.g. `make test-fast PYTEST_ARGS=tests/test_cli.py`.
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-gimp lint clean examples bench dist test-dist

$(VENV)/.base: pyproject.toml setup.py
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

# The whole check, as CI runs it: every test but the `gpu` ones (markers: pyproject.toml,
# README's Tests section). Any failing step fails the target, pytest's "no tests ran" (exit
# code 5) included; a missing tool or root is a failed test with a sentence, never a skip.
test: $(VENV)/.dev
	bash tests/install_system_deps.sh
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

# The edit-test loop: no real GIMP (a chroot) and no frozen bundle (PyInstaller).
test-fast: $(VENV)/.dev
	bash tests/install_system_deps.sh
	$(PY) -m pytest -m "not gimp and not dist and not gpu" $(PYTEST_ARGS)

# Only the tests in a real GIMP 3; builds its chroot on first use (tests/gimp/harness/).
test-gimp: $(VENV)/.dev
	bash tests/install_system_deps.sh
	$(PY) -m pytest -m gimp $(PYTEST_ARGS)

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
	$(PY) -m pytest -m dist $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out build dist *.egg-info

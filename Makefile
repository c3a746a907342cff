# The README's two commands: `make demo` (run the main job) and `make test` (pass the tests).
# Both create .venv and install everything on first use; afterwards they skip the install.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REPO   ?= model_repository
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast repository serve lint clean help

help:
	@echo "make demo        export models, build $(REPO)/, serve it, query it, run a short load test"
	@echo "make test        install (first time) and run the whole test suite"
	@echo "make test-fast   the suite without the slow real-model tests"
	@echo "make repository  build the demo model repository only"
	@echo "make serve       serve $(REPO)/ in the foreground (Ctrl-C stops)"
	@echo "make lint        ruff"

venv: $(STAMP)

# torch goes first so pip takes the CPU wheel found on disk instead of backtracking to the CUDA
# build; nvidia-pytriton goes last with --no-deps (we use its tritonserver binary, not its
# Python API, whose tritonclient[http] pin conflicts with Locust).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "nvidia-pytriton==0.7.0"
	touch $(STAMP)

repository: $(STAMP)
	$(PY) -m ensembles build --repository $(REPO)

demo: $(STAMP)
	$(PY) -m demo --repository $(REPO)

serve: $(STAMP)
	$(PY) -m server serve --model-repository $(REPO)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(REPO)/*/ .pytest_cache build

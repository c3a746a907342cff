# The README's two commands: `make demo` (run the main job) and `make test` (pass the tests).
# Both create .venv and install everything on first use; afterwards they skip the install.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REPO   ?= model_repository
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast test-shipped repository serve image lint clean help rollout-demo

help:
	@echo "make demo        export models, build $(REPO)/, serve it, query it, run a short load test"
	@echo "make test        install (first time) and run the whole test suite"
	@echo "make test-fast   the suite without the slow real-model tests"
	@echo "make repository  build the demo model repository only"
	@echo "make serve       serve $(REPO)/ in the foreground (Ctrl-C stops)"
	@echo "make rollout-demo canary (promote, roll back) and shadow runs of digits_cnn under Locust load"
	@echo "make image       build the CPU serving, Locust and HTTP front images with podman (root; docker/podman/)"
	@echo "make test-shipped the tests of what ships: the CPU image, the GPU image's Python 3.10 side, the client extra"
	@echo "make lint        ruff"

venv: $(STAMP)

# docker/install.sh is the one install procedure, shared with the CPU image (see its header:
# torch's CPU wheel first, nvidia-pytriton last with --no-deps). scripts/system_packages.sh adds
# the Debian packages the tests use (qemu-user).
$(STAMP): pyproject.toml docker/install.sh scripts/system_packages.sh
	scripts/system_packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	docker/install.sh $(PY) -e ".[dev]"
	touch $(STAMP)

repository: $(STAMP)
	$(PY) -m tritonstack.ensembles build --model-repository $(REPO)

demo: $(STAMP)
	$(PY) scripts/run_demo.py --model-repository $(REPO)

rollout-demo: $(STAMP)
	$(PY) -m tritonstack.ensembles build --model-repository $(REPO)
	$(PY) scripts/rollout_demo.py --model-repository $(REPO)

serve: $(STAMP)
	$(PY) -m tritonstack.server serve --model-repository $(REPO)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Part of `make test` too; needs root (podman) and a Python 3.10 (pyenv), else those tests skip.
test-shipped: $(STAMP)
	$(PY) -m pytest tests/shipped $(PYTEST_ARGS)

image:
	docker/podman/build.sh mounted loadtest http

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(REPO)/*/ .pytest_cache build

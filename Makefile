# cpt — every target sets up what it needs; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PARAMS ?= params/quickstart.yaml
BIN := $(VENV)/bin
# TORCH_INDEX=cpu: install torch from PyTorch's CPU wheel index before the lock, so an ordinary Linux
# machine gets the CPU build (PyPI's Linux wheel of torch is the CUDA build and pulls the nvidia-* wheels).
# Any other value is used as the index URL (e.g. https://download.pytorch.org/whl/cu128); empty: PyPI.
TORCH_INDEX ?=
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),https://download.pytorch.org/whl/cpu,$(TORCH_INDEX))
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements.lock)
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv browser assets report test test-cpu-kinds test-fast lab clean-reports strip

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(if $(TORCH_INDEX_URL),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX_URL) torch==$(TORCH_VERSION))
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP) ## create .venv with the exact versions in requirements.lock (once; TORCH_INDEX=cpu: CPU-only torch)

assets: venv ## fetch and verify the offline assets (model, corpora, MMLU) into the cache
	$(BIN)/cpt assets

report: venv ## run the experiment in PARAMS (default: the offline quickstart) and render reports/<run>/
	$(BIN)/cpt run $(PARAMS)

browser: ## Debian's chromium, which the report tests look at pages with (installed where missing)
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: venv browser ## run the test suite (what CI runs)
	$(BIN)/python -m pytest

test-cpu-kinds: venv browser ## the suite as this CPU resolves precision auto, then as the other kind does (bf16 native vs emulated)
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --cpu-bf16=other

test-fast: venv ## the tests that do not load the real model or run notebooks
	$(BIN)/python -m pytest -m "not slow"

lab: venv ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

strip: venv ## remove outputs from the committed notebooks
	$(BIN)/python -m cpt_utils.notebook_hygiene --strip notebooks/*.ipynb

clean-reports: ## delete rendered reports (runs/ is kept)
	rm -rf reports/*/

# The README's two commands: `make app` and `make test`. Both set up .venv first.
# TORCH=auto|cpu|cuda picks the PyTorch build of a new .venv: auto (the default) takes the
# CPU wheels unless nvidia-smi finds an NVIDIA GPU (scripts/install_torch.py says which).
# To switch an existing .venv: rm -rf .venv, then e.g. `make setup TORCH=cpu`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= auto

.PHONY: app serve test lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) scripts/install_torch.py $(TORCH)
	$(PY) -m pip install -q -e '.[app,dev]'
	touch $@

# Local by default (.streamlit/config.toml: 127.0.0.1). `make serve` serves the network;
# name the folders browsers may read with ROOTS="dir1 dir2" (or $$CONVATTN_DATA_ROOTS).
ROOTS ?=
ROOT_FLAGS := $(foreach r,$(ROOTS),--data-root $(r))
# Your network and images: `make app MODEL=card.toml DATA=folder` opens the model card
# (docs/app.md) on an image folder (test/<class>/* or <class>/*) of any image size.
MODEL ?=
DATA ?=
MODEL_FLAGS := $(if $(MODEL),--model $(MODEL))
DATA_ENV := $(if $(DATA),CONVATTN_DATA=$(DATA))

app: setup
	@echo "Serving on this machine only (http://127.0.0.1:8501); 'make serve' serves the network."
	$(DATA_ENV) $(PY) -m streamlit run app.py -- $(strip $(ROOT_FLAGS) $(MODEL_FLAGS))

serve: setup
	@echo "Serving the network (--server.address 0.0.0.0): folder, download and upload limits stay on."
	$(DATA_ENV) $(PY) -m streamlit run app.py --server.address 0.0.0.0 -- $(strip $(ROOT_FLAGS) $(MODEL_FLAGS))

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

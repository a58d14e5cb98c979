# The README's two commands: `make app` and `make test`. Both set up .venv first.
# TORCH=auto|cpu|cuda picks the PyTorch build of a new .venv: auto (the default) takes the
# CPU wheels unless nvidia-smi finds an NVIDIA GPU (scripts/install_torch.py says which).
# To switch an existing .venv: rm -rf .venv, then e.g. `make setup TORCH=cpu`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= auto

.PHONY: app test lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) scripts/install_torch.py $(TORCH)
	$(PY) -m pip install -q -e '.[app,dev]'
	touch $@

app: setup
	$(PY) -m streamlit run app.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

# make repro   set up .venv and run the whole pipeline (dvc repro) on the embedded synthetic world
# make test    set up .venv and run the tests
# make ui      start the Prefect server + UI and the MLflow UI on 127.0.0.1

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Telemetry off, state inside the project, one absolute MLflow store (absolute, so that
# `dvc exp run --temp` copies of the workspace log to the same place).
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_HOME := $(CURDIR)/.prefect
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export SELFSUP_MLFLOW_ARTIFACTS ?= $(CURDIR)/mlartifacts
export PYTHONUNBUFFERED := 1
# stage commands in dvc.yaml say `python`: the project's interpreter
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test bench ui clean-state

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

repro: $(STAMP)
	test -d .git || git init -q
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

# CPU benchmarks: each prints its figures as ratios against a baseline run in the same process.
bench: $(STAMP)
	$(BIN)/python benchmarks/clips_decode.py
	$(BIN)/python benchmarks/crw_train.py
	$(BIN)/python benchmarks/propagate.py
	$(BIN)/python benchmarks/cut_train.py

ui: $(STAMP)
	$(BIN)/python -m pipeline.ui

clean-state:
	rm -rf mlflow.db mlartifacts mlruns .prefect

# NutriLearn: the two set-up commands are `make run` (install + build model + app) and
# `make test` (install + build model + tests). Everything lands in .venv/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install setup run test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

setup: install
	$(BIN)/nutrilearn setup

run: setup
	$(BIN)/streamlit run app.py

test: setup
	bash scripts/browser-deps.sh
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) models

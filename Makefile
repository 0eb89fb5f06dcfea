# The two user commands: `make run` (the paper study, config/config.yaml; STUDY=survey|realistic|physical for the others) and `make test` (the test suite).
# Both create .venv on first use through `make venv`, with the pins of envs/constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lenspipe-installed
CORES ?= all
# make run STUDY=survey (or realistic, physical): the study of config/<STUDY>.yaml; the paper run is config/config.yaml.
STUDY ?= paper
STUDY_CONFIG := $(if $(filter paper,$(STUDY)),config/config.yaml,config/$(STUDY).yaml)

.PHONY: venv run test lint report clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml envs/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e '.[test]'
	touch $@

run: venv
	$(BIN)/snakemake --cores $(CORES) --configfile $(STUDY_CONFIG)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint --configfile config/test.yaml

report: venv
	$(BIN)/snakemake --report report.html

clean-venv:
	rm -rf $(VENV)

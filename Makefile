# movierec: `make setup` (implied by every target), `make small`, `make full`, `make test`,
# `make bench`, `make lab`. Extra notebook parameters: make small P="EPOCHS=5 SEED=1".
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.movierec-installed
CONDA := $(shell command -v mamba 2>/dev/null || command -v conda 2>/dev/null)
NOTEBOOK := notebooks/movierec.ipynb
FULL_DATASET ?= ml-latest
DATASET ?=
P ?=

export MOVIEREC_DATA ?= $(CURDIR)/data
export MOVIEREC_CACHE ?= $(CURDIR)/.cache/movierec
export TQDM_MININTERVAL ?= 10
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# One MKL code path (AVX2) on every x86-64 CPU that has it, so that CPU results do not depend
# on the machine's instruction set (README, Reproducibility). MKL_CBWR= (empty) lifts it.
export MKL_CBWR ?= AVX2
RECHECK := .cache/recheck
# `make test` reruns the committed report on a simulated other machine: MKL's generic code path
OTHER_MKL ?= COMPATIBLE
# nbval's default limit per cell (2,000 s) is about what the small report's baselines cell
# takes on a 2-core VM (SVD++, LightFM); a cell may take up to 4 hours (make small: no limit)
CELL_TIMEOUT ?= 14400

params = $(if $(DATASET),-p DATASET=$(DATASET)) $(foreach p,$(P),-p $(p))

.PHONY: help setup small full tune tune-baselines test lint bench tolerance readme generate lab clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: $(STAMP)  ## build the environment from environment.yml (conda/mamba, else .venv + pip)

$(STAMP): environment.yml pyproject.toml Makefile
ifneq ($(CONDA),)
	$(CONDA) env $(if $(wildcard $(VENV)/conda-meta),update --prune,create) --prefix $(VENV) --file environment.yml
else
	test -x $(PY) || python3 -m venv $(VENV)
	sed -n '/^ *- pip:/,$$p' environment.yml | tail -n +2 | grep -E '^ +- ' | sed -E 's/^ *- //' > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(VENV)/requirements.txt
endif
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -m ipykernel install --user --name movierec --display-name "Python (movierec)" --env MKL_CBWR "$(MKL_CBWR)" >/dev/null
	touch $@

small: $(STAMP)  ## run the notebook on ml-latest-small into reports/small (ipynb, html, metrics.json)
	$(PY) -m movierec.report $(NOTEBOOK) notebooks/params/small.yaml reports/small $(params)

full: $(STAMP)  ## the same on the full dataset with genome (DATASET=ml-latest by default; ml-25m, or a folder)
	$(PY) -m movierec.report $(NOTEBOOK) notebooks/params/full.yaml reports/full -p DATASET=$(or $(DATASET),$(FULL_DATASET)) $(foreach p,$(P),-p $(p))

tune: $(STAMP)  ## record the main model's val search (MAIN_TRIALS) and MODELS' grids -> reports/tune/<dataset>.json, notebooks/params/tuned.yaml (a stopped run resumes; FRESH=1 restarts)
	$(PY) -m movierec.tune $(if $(DATASET),--dataset $(DATASET)) $(if $(FRESH),--fresh)

tune-baselines: $(STAMP)  ## record the baselines' val grid searches -> reports/tune/<dataset>-baselines.json (a stopped run resumes; FRESH=1 restarts)
	$(PY) -m movierec.tune --baselines $(if $(DATASET),--dataset $(DATASET)) $(if $(FRESH),--fresh)

lint: $(STAMP)  ## ruff over the package, tests and notebooks
	$(VENV)/bin/ruff check movierec tests notebooks

# The notebook runs once under nbval: as the committed reports/small (whose cells a test holds
# equal to notebooks/movierec.ipynb's), on a simulated other machine (MKL's generic code path).
test: lint  ## ruff, unit + real-data tests, the notebook under nbval (reports/small rerun elsewhere)
	$(PY) -m pytest -q
	rm -rf $(RECHECK)
	$(PY) -c 'from movierec.report import rerun_copy; rerun_copy("reports/small/movierec.ipynb", "$(RECHECK)")'
	MKL_CBWR=$(OTHER_MKL) $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider $(RECHECK)/movierec.ipynb
	$(PY) -m movierec.compare reports/small/metrics.json $(RECHECK)/metrics.json --expect-mode tolerance --expect-exact-differs
	MKL_CBWR=$(OTHER_MKL) MOVIEREC_MODEL=$(CURDIR)/$(RECHECK)/model $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider notebooks/explore.ipynb

generate: $(STAMP)  ## write a MovieLens-format dataset with genome (SCALE=full|medium|small|1m|100k|tiny, SEED=0, OUT=folder, LAYOUT=csv|ml-100k|ml-1m|ml-10m)
	$(PY) -m movierec.synth --scale $(or $(SCALE),full) --seed $(or $(SEED),0) $(if $(LAYOUT),--layout $(LAYOUT)) --out $(or $(OUT),$(MOVIEREC_DATA)/synthetic-$(or $(SCALE),full)$(if $(filter-out 0,$(or $(SEED),0)),-seed$(SEED)))

bench: $(STAMP)  ## speed and memory benchmark on generated full-scale data -> reports/bench/
	$(PY) -m movierec.bench --out reports/bench $(if $(SCALE),--scale $(SCALE))

tolerance: $(STAMP)  ## rerun reports/small under other CPU code paths -> reports/tolerance.json
	$(PY) -m movierec.tolerance --report reports/small --out reports/tolerance.json

readme: $(STAMP)  ## regenerate README's figures from reports/*/metrics.json and bench.json
	$(PY) -m movierec.readme

# JupyterLab refuses to run as root (containers, many cloud machines) unless told it may
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)  ## open JupyterLab on explore.ipynb (a trained model; make small first), notebooks beside it
	@echo "JupyterLab starts below; open the http://localhost:... URL it prints (with its token)."
	$(VENV)/bin/jupyter lab notebooks/explore.ipynb $(ROOT_FLAG)

clean:  ## remove caches and test leftovers (keeps .venv, data/ and reports/)
	rm -rf .cache .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## also remove the environment
	rm -rf $(VENV)

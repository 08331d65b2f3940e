# labquake: every target is a thin call of the `labquake` command line.
# `make help` lists the targets. Paths below are the defaults of src/labquake/config.py.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LQ     := $(BIN)/labquake
GPU    ?=
REQ    := $(if $(GPU),requirements-gpu.txt,requirements.txt)
STAMP  := $(VENV)/.installed-$(if $(GPU),gpu,cpu)

RAW      := data/raw
INTERIM  := data/interim
FEATURES := data/features
SUBS     := submissions
PRESET   ?= recipe
RUN      ?=
JOBS     ?= 0
# pytest workers for make test (each builds the session's tiny data, features and run once)
TESTJOBS ?= 2
LQFLAGS  ?=
CFG      := --preset $(PRESET) $(LQFLAGS)
# The run folder: RUN=... if given, else the command's default, models/PRESET (models/PRESET-KEY
# when LQFLAGS change a setting a run depends on), so each configuration trains into its own folder.
RUNFLAG  := $(if $(RUN),--run $(RUN))

.DEFAULT_GOAL := help
.PHONY: help install run data features train submit predict report score kernel kernel-push test lint bench bench-difficulty bench-seq bench-svr bench-cluster bench-realism bench-shift clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The venv is rebuilt when a requirements file or pyproject.toml changes. The CPU and GPU
# builds of TensorFlow must never share one venv, so switching GPU= rebuilds it from scratch.
$(STAMP): $(REQ) requirements-dev.txt pyproject.toml
	@if [ -d $(VENV) ] && [ ! -f $@ ] && ls $(VENV)/.installed-* >/dev/null 2>&1; then \
	  echo "switching TensorFlow build: recreating $(VENV)"; rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r $(REQ) -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv from the pinned requirements (GPU=1 for the CUDA build)

run: $(STAMP) ## everything: synthetic data if data/raw is empty, then features, train, submit, report
	@if [ ! -f $(RAW)/train.csv ]; then \
	  echo "no real data in $(RAW)/: writing the synthetic 'demo' preset there"; \
	  $(LQ) synth --out $(RAW) --preset demo --seed 0; fi
	$(MAKE) --no-print-directory submit
	@if [ -f $(RAW)/test_truth.csv ]; then $(LQ) score $(SUBS)/submission_geomean.csv $(RAW)/test_truth.csv; fi

data: $(STAMP) ## write the synthetic demo data into data/raw (SYNTH=tiny|demo|full, SEED=0)
	$(LQ) synth --out $(RAW) --preset $(or $(SYNTH),demo) --seed $(or $(SEED),0)

# features, train and submit always call their command, so a changed PRESET or LQFLAGS always
# reaches it; the commands skip what is up to date (feature tables are keyed by their inputs and
# settings, a run folder resumes from its finished seeds and draws, or is refused if made otherwise).
features: $(STAMP) ## per-segment feature tables (cached: recomputed only when inputs or settings change)
	$(LQ) features --data $(RAW) --out $(FEATURES) --interim $(INTERIM) --jobs $(JOBS) $(CFG)

train: features ## LightGBM + network, cross-validated (PRESET=fast for a quick run; resumes a run folder)
	$(LQ) train --features $(FEATURES) --jobs $(JOBS) $(RUNFLAG) $(CFG)

submit: train ## blend and write the submission files, then the report
	$(LQ) submit $(RUNFLAG) --data $(RAW) --out $(SUBS) $(CFG)
	$(LQ) report $(RUNFLAG) $(CFG)

predict: $(STAMP) ## time to failure along a recording: make predict RECORDING=file.csv OUT=dir [STEP=150000] (RUN= as for submit)
	@[ -n "$(RECORDING)" ] && [ -n "$(OUT)" ] || { echo "predict: give RECORDING=FILE and OUT=DIR" >&2; exit 2; }
	$(LQ) predict $(RUNFLAG) --recording $(RECORDING) --out $(OUT) $(if $(STEP),--step $(STEP)) --jobs $(JOBS) $(CFG)

report: $(STAMP) ## plots and report.md in the run folder
	$(LQ) report $(RUNFLAG) $(CFG)

kernel: $(STAMP) ## bundle a Kaggle kernel into build/kernel
	$(LQ) kernel --out build/kernel $(CFG)

kernel-push: kernel ## upload the kernel with the Kaggle command line
	@command -v kaggle >/dev/null || { echo "kernel-push: the kaggle command line is not installed (pip install kaggle)" >&2; exit 2; }
	@[ -f $$HOME/.kaggle/kaggle.json ] || [ -n "$$KAGGLE_USERNAME" ] || { echo "kernel-push: no Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)" >&2; exit 2; }
	kaggle kernels push -p build/kernel

test: $(STAMP) ## the test suite (tiny synthetic data; TESTJOBS=2 worker processes, 1 for one process)
	$(BIN)/python -m pytest -q $(if $(filter-out 1,$(TESTJOBS)),-n $(TESTJOBS))

lint: $(STAMP) ## ruff: lint and format check (`.venv/bin/ruff format .` fixes the format)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP) ## benchmarks at full scale (long; writes bench/out/)
	$(BIN)/python bench/run.py

bench-difficulty: $(STAMP) ## how hard the synthetic data is: recipe on demo and full, two seeds (about an hour)
	$(BIN)/python bench/difficulty.py

bench-seq: $(STAMP) ## lgbm, nn and seq side by side on demo and full (same folds), and their blends (about an hour)
	$(BIN)/python bench/difficulty.py --presets demo full --seeds 0 --name seq --set 'blend.models=["lgbm","nn","seq"]' $(BENCHFLAGS)

bench-svr: $(STAMP) ## lgbm, nn and svr side by side on demo and full (same folds), and their blends (about 40 minutes)
	$(BIN)/python bench/difficulty.py --presets demo full --seeds 0 --name svr --set 'blend.models=["lgbm","nn","svr"]' $(BENCHFLAGS)

bench-cluster: $(STAMP) ## features on a Dask LocalCluster of 1 and 2 workers against the local run (full size, about 8 minutes; BENCHFLAGS=--preset demo)
	$(if $(shell command -v flock),flock /tmp/labquake-bench.lock) $(BIN)/python bench/cluster.py $(BENCHFLAGS)

bench-shift: $(STAMP) ## training for the test's regime: every option of issue 21 on demo and full, seeds 0 and 1, with and without the test shift (about 90 minutes)
	$(BIN)/python bench/shift.py $(BENCHFLAGS)

bench-realism: $(STAMP) ## synthetic test segments against the real test features: make bench-realism REAL=DIR (the real samples; demo and full, seeds 0 and 1)
	@[ -n "$(REAL)" ] || { echo "bench-realism: give REAL=DIR, the folder of the real samples (test_features.parquet)" >&2; exit 2; }
	$(BIN)/python bench/realism.py --real $(REAL) $(BENCHFLAGS)

clean: ## remove derived data, models and submissions (keeps data/raw and .venv)
	rm -rf $(INTERIM) $(FEATURES) models build $(SUBS)/*.csv

# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch 2.13.0 (the version CI tests; pyproject allows >=2.1); install it first so
# no CUDA build is pulled.
TORCH  ?= torch==2.13.0
SAMPLES := src/bayescellseg/samples/dsb2018
DEMO_OUT ?= demo_out

.PHONY: venv dev demo test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## demo: install, then segment the bundled sample images with the bundled model and write the HTML report
demo: $(VENV)/.installed
	$(BIN)/bayescellseg data check $(SAMPLES)
	$(BIN)/bayescellseg predict $(SAMPLES) --out $(DEMO_OUT)/pred --overwrite
	$(BIN)/bayescellseg evaluate --pred $(DEMO_OUT)/pred --truth $(SAMPLES) --out $(DEMO_OUT)/report --overwrite
	@echo "Open $(DEMO_OUT)/report/report.html"

## test: install with dev extras, then lint and run the test suite
test: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_predict.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache

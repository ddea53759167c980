# EchoForge — two commands do all set-up on a fresh machine:
#   make serve   install everything, then start the MONAI Label server on sample-data/
#   make test    install everything (with test tools), then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -c requirements/constraints.txt
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
STUDIES ?= sample-data/studies
CONF ?=
PYTEST_ARGS ?=

.PHONY: install serve test lint benchmarks sample-data demo-model clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt requirements/monailabel.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --upgrade "pip>=24" "setuptools>=68" wheel
	# torch first, so that nothing later swaps it for another build
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -r requirements/monailabel.txt
	# monailabel's own metadata asks for sam2 (source-only, CUDA build); its dependencies are installed above
	$(BIN)/pip install --disable-pip-version-check --no-deps monailabel==0.8.5
	$(PIP) -e ".[test]"
	touch $(STAMP)

serve: install
	. $(BIN)/activate && echoforge serve --studies "$(STUDIES)" --host "$(HOST)" --port "$(PORT)" $(CONF)

test: install
	. $(BIN)/activate && ruff check . && pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

benchmarks: install
	. $(BIN)/activate && python benchmarks/bench_io.py && python benchmarks/bench_methods.py && python benchmarks/bench_server.py

sample-data: install
	. $(BIN)/activate && echoforge sample-data --out sample-data

demo-model: install
	. $(BIN)/activate && python -m echoforge.weights.build_demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

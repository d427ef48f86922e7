# `make run` and `make test` create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/privacysplit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $@

.PHONY: install run test lint
install: $(BIN)/privacysplit

run: install  ## the main job: a search on the embedded MNIST sample
	$(BIN)/privacysplit search --base lenet --agent bilstm --budget 60 --out runs/quickstart-$(shell date +%Y%m%d-%H%M%S)

test: install  ## the default test suite (about 5 minutes on 2 cores)
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/pip install -q ruff && $(BIN)/ruff check privacysplit tests benchmarks

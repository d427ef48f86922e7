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

# The first run: the paper's BiLSTM searcher, 20 plan evaluations on 2 worker processes, over
# LeNet split at layer 7 or 9 with techniques W1, W2, C1 and F1 (192 plans, every one measured
# in benchmarks/results/reward_table).  Two partitions keep the one-time costs of a first run
# (base training, one attack prior per partition) small; --max-seconds stops the search after
# the batch that passes 100 s.  `privacysplit search --help` for the full search.
QUICKSTART = --base lenet --agent bilstm --partitions 7,9 --techniques W1,W2,C1,F1 --budget 20 --workers 2 --max-seconds 100

run: install  ## the first run: a search on the embedded MNIST sample (about 2 minutes)
	$(BIN)/privacysplit search $(QUICKSTART) --out runs/quickstart-$(shell date +%Y%m%d-%H%M%S)

test: install  ## the default test suite (about 5 minutes on 2 cores)
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/pip install -q ruff && $(BIN)/ruff check privacysplit tests benchmarks

# Two commands do all the set-up on a fresh machine with only Python:
#   make run    - install into .venv (first time only), then run `dalkit run` on the embedded digits data
#   make test   - install into .venv (first time only), then run the test suite
# requirements.txt pins everything, the `web` extra (the labelling page) and the test tools included.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint clean

$(BIN)/dalkit: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: $(BIN)/dalkit
	$(BIN)/dalkit run

test: $(BIN)/dalkit
	$(BIN)/python -m pytest -q

lint: $(BIN)/dalkit
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs

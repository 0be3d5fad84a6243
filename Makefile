# Every target sets itself up: a fresh machine needs only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-postgres bench-frameworks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## The main job: write a scripted agent session into ./.lashstore and show what is stored.
demo: $(STAMP)
	$(VENV)/bin/lashstore demo

## The whole test suite.
test: $(STAMP)
	$(PY) -m pytest -q

## Benchmarks, side by side with the raw-SQLite limit.
bench: $(STAMP)
	$(PY) benchmarks/turn_commit.py

## The PostgreSQL backend's turn commits and claims (needs the server of LASHSTORE_TEST_POSTGRES_URL).
bench-postgres: $(STAMP)
	$(PY) benchmarks/postgres.py

## LangGraph's SqliteSaver and the OpenAI Agents SQLiteSession against lashstore's adapters.
bench-frameworks: $(STAMP)
	$(PY) benchmarks/frameworks.py --quick

clean:
	rm -rf $(VENV) .lashstore .pytest_cache .hypothesis

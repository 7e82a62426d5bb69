# reactor — developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serve on the built-in defaults, files under ./files, logs in ./logs.
run: $(STAMP)
	mkdir -p files logs
	$(VENV)/bin/reactor serve --directory files --log logs/access.log --error-log logs/error.log

test: $(STAMP)
	$(VENV)/bin/ruff check reactor tests bench
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check reactor tests bench

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# reactor — developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-tools lint typecheck fuzz conformance bench clean

# Debian tools some tests use (systemd-analyze verifies the units, logrotate checks
# conf/logrotate, haproxy runs conf/haproxy.cfg in front of two instances, chromium loads the
# WebSocket chat page). Installed when missing and we are root; otherwise those tests skip.
TEST_TOOLS := systemd-analyze:systemd logrotate:logrotate haproxy:haproxy chromium:chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serve on the built-in defaults (never /etc/reactor/reactor.toml, which a host running the
# service has), files under ./files, logs in ./logs.
run: $(STAMP)
	mkdir -p files logs
	@echo "reactor: http://127.0.0.1:4221 (files in ./files); logs: tail -f logs/access.log logs/error.log"
	$(VENV)/bin/reactor serve --no-config --directory files --log logs/access.log --error-log logs/error.log

test: $(STAMP) test-tools
	$(VENV)/bin/ruff check reactor tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest

test-tools:
	@missing=""; for pair in $(TEST_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing test tools:$$missing"; \
	  (apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) \
	  || echo "could not install$$missing; their tests will skip"; fi

# Every Autobahn|Testsuite case 1-13 against /ws/echo, the permessage-deflate ones (12.x,
# 13.x) included; they take several minutes. `make test` runs cases 1-10. Then testssl.sh
# against an HTTPS listener on the default TLS settings (~40 s; installed when missing).
conformance: $(STAMP)
	@command -v testssl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get install -y -qq testssl.sh >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 \
	  && apt-get install -y -qq testssl.sh >/dev/null 2>&1)); } \
	  || echo "testssl.sh not installed; its test will skip"
	REACTOR_AUTOBAHN_FULL=1 $(PY) -m pytest -q -s tests/conn/test_ws_autobahn.py
	REACTOR_TESTSSL=1 $(PY) -m pytest -q -s tests/conn/test_testssl.py

lint: $(STAMP)
	$(VENV)/bin/ruff check reactor tests bench
	$(VENV)/bin/mypy

# mypy alone (also part of `make lint` and `make test`).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Every hypothesis test (auto-marked `fuzz` in tests/conftest.py) with thousands of examples;
# `make test` runs them with the short "ci" profile.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -m fuzz tests

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

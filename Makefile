# Ringback: `make run` starts the whole stack on embedded defaults; `make test` is the whole suite.

PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.13/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
RASA := $(BIN)/rasa

.DEFAULT_GOAL := help
.PHONY: help install train migrate run cluster demo test test-unit test-stress fault-test bench nlu-report lint validate image image-test check-deploy clean

help:
	@echo "make run         start Rasa, the action server, the gateway and the Twilio simulator"
	@echo "make cluster     the production topology here: nginx, 2 gateways, 2 Rasa, 2 action servers"
	@echo "make demo        seed synthetic history, play a missed call through the running stack"
	@echo "make test        the whole test suite (unit, integration, browser)"
	@echo "make fault-test  kill, restart and cut off each part of the cluster mid-burst; report"
	@echo "make test-stress the whole suite with every core busy (AT=\"2026-12-05 23:30\": London clock)"
	@echo "make train       retrain the model when data/, domain.yml or config.yml changed"
	@echo "make nlu-report  5-fold cross-validation report in reports/"
	@echo "make bench       speed benchmarks (BENCH=\"slots nlu_parse\" for some)"
	@echo "make image       the Docker image (gateway, Rasa, action server); builds its base if missing"
	@echo "make image-test  run the image's three commands as containers on local PostgreSQL/Redis"
	@echo "make check-deploy  validate deploy/kubernetes and deploy/compose against their schemas"

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.10 not found. Rasa 3.6 needs 3.10; install it or run 'make PYTHON=/path/to/python3.10'." >&2; \
		exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' || { \
		echo "error: $(PYTHON) is not Python 3.10 (Rasa 3.6 supports 3.8-3.10)." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=68" wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Rasa fingerprints data/, domain.yml and config.yml and skips training when nothing changed.
train: install
	$(RASA) train --fixed-model-name ringback --out models

migrate: install
	$(BIN)/ringback migrate

validate: install
	$(RASA) data validate

run: train
	$(BIN)/ringback run

# nginx in front of two gateways and two action servers, two Rasa servers, PostgreSQL and Redis
# (throw-away ones of its own unless DATABASE_URL and REDIS_URL are set). See stack/cluster.py.
cluster: train
	$(BIN)/ringback cluster

# Ninety days of clearly marked synthetic history first (once), so the dashboard has a shape.
demo: install
	$(BIN)/ringback seed-history --clinic riverside --days 90
	$(BIN)/ringback demo

# The cluster's slow fault cases run in `make fault-test`; the Rasa-kill case is in here.
test: install
	$(BIN)/python -m pytest -q -m "not fault"

# Every fault case of the cluster (tests/cluster/test_faults.py), its report printed (-s).
fault-test: train
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/cluster

test-unit: install
	$(BIN)/python -m pytest -q -m "not integration and not browser"

# The whole suite with every core kept busy, optionally from a chosen moment in Europe/London:
# make test-stress AT="2026-12-05 23:30". See scripts/test_stress.sh.
test-stress: install
	scripts/test_stress.sh "$(AT)"

bench: train
	$(BIN)/python -m bench $(BENCH)

# 5-fold cross-validation of config.yml on data/nlu into reports/nlu/current/ (per-intent table,
# confusion matrix); the run before is kept in reports/nlu/previous/ and the deltas printed.
nlu-report: install
	nice $(BIN)/python scripts/nlu_report.py

lint: install
	$(BIN)/ruff check booking actions connectors nlu_components simulator tests bench

# One image for gateway, Rasa and action server (docker/Dockerfile, README "Images and
# manifests"); makes the base image locally when no registry serves it.
image: train
	docker/build_image.sh

# The image's gateway, Rasa and action server as containers (production settings, read-only)
# on this machine's PostgreSQL and Redis, then one patient message through them.
image-test: install
	docker/smoke_test.sh

check-deploy:
	deploy/check.sh

clean:
	rm -rf models var reports .pytest_cache

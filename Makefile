# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The hub defaults to HUB_ENV=production (fail closed); a checkout runs in development.
export HUB_ENV ?= development

.PHONY: demo test faults bad-inputs lint install migrate worker finance-worker usage-worker beat web schemas contracts-check clean bench bench-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[erp,test]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --no-input

## Run the whole hub on the embedded defaults: worker, beat, web, a real Tryton ERP
## and the Stripe sandbox sending signed invoice events.
# The demo keeps its own database and broker under var/demo, fresh each run.
demo: $(STAMP)
	rm -rf var/demo
	HUB_VAR_DIR=var/demo LOG_LEVEL=WARNING $(BIN)/python manage.py migrate --no-input -v 0
	HUB_VAR_DIR=var/demo LOG_LEVEL=WARNING $(BIN)/python manage.py hub_demo $(DEMO_ARGS)

## The whole test suite (unit, integration with a real worker, end-to-end with Tryton).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The performance suite against the running PostgreSQL (127.0.0.1:5432) and Redis
## (127.0.0.1:6379): writes benchmarks/RESULTS.md and benchmarks/results.json.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[erp,test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## The same code paths with small counts (CI): checks every figure is produced, not its value.
bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks.run --smoke $(BENCH_ARGS)

## A simulated month (3 entities, 10 currencies, subscriptions, plan changes, credit
## notes, voids, late and partial payments) into a fresh Tryton, then the three-way
## reconciliation table; MONTH_ARGS="--subscriptions 15" is the CI size.
month: $(STAMP)
	rm -rf var/month
	HUB_VAR_DIR=var/month $(BIN)/python manage.py migrate --no-input -v 0
	HUB_VAR_DIR=var/month $(BIN)/python manage.py simulate_month $(MONTH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check integration_hub canonical connectors tests benchmarks

## The fault-injection suite (real processes; needs redis-server, rabbitmq-server and PostgreSQL,
## as in CI) and its reliability table, also written to var/reliability-report.md. Sizes:
## FAULTS_CATALOG_PLANS (40; CI 10) and FAULTS_USAGE_RECORDS (100000; CI 20000).
faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -m faults -p no:cacheprovider $(PYTEST_ARGS)

## The hostile-input suite: every case against the web stack, schemathesis against the
## OpenAPI schema and a hypothesis fuzz of each webhook parser; prints the table (also
## written to var/bad-inputs.md). BAD_INPUTS_SIZE=ci runs the fuzz with small counts.
BAD_INPUTS_SIZE ?= full
ifeq ($(BAD_INPUTS_SIZE),ci)
bad-inputs: export BAD_INPUTS_FUZZ_EXAMPLES ?= 60
bad-inputs: export BAD_INPUTS_SCHEMA_EXAMPLES ?= 5
endif
bad-inputs: $(STAMP)
	$(BIN)/python -m pytest tests/badinputs -m badinputs -p no:cacheprovider $(PYTEST_ARGS)

## One worker for every hub queue (a single-worker setup: nothing waits on a queue no one
## consumes). Beside finance-worker and usage-worker, leave their queues to them:
## WORKER_ARGS="-X hub-finance,hub-usage" (docs/scaling.md).
worker: migrate
	$(BIN)/celery -A integration_hub worker --loglevel=INFO --concurrency=2 $(WORKER_ARGS)

## The finance queue's worker: invoice postings, payments, adjustments, amendments, rates.
finance-worker: migrate
	$(BIN)/celery -A integration_hub worker -Q $${HUB_FINANCE_QUEUE:-$${HUB_QUEUE:-hub}-finance} -n finance@%h --loglevel=INFO --concurrency=2

## The bulk usage queue's worker (usage loads never share a worker with finance postings).
usage-worker: migrate
	$(BIN)/celery -A integration_hub worker -Q $${HUB_USAGE_QUEUE:-$${HUB_QUEUE:-hub}-usage} -n usage@%h --loglevel=INFO --concurrency=1

beat: migrate
	$(BIN)/celery -A integration_hub beat --loglevel=INFO

web: migrate
	$(BIN)/python manage.py runserver

schemas: $(STAMP)
	$(BIN)/python manage.py contracts_publish

## The published JSON Schemas against the code: fails on a breaking change (removed or
## retyped field, new required field) unless the version goes up, and on a lowered or
## unpublished version.
contracts-check: $(STAMP)
	$(BIN)/python manage.py contracts_check

clean:
	rm -rf var

# settlement — the two commands a fresh machine needs:
#   make demo   local stack + the whole pipeline end to end: payments, mock banks, checked summary
#   make test   everything the CI runs (installs Python deps and the JVM servers itself)

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
# make test: pytest workers (pytest-xdist), each on a stack of its own (tests/conftest.py); a
# test file runs on one worker, in file order, so the long e2e files start first. 0 = serial.
TEST_WORKERS ?= 2

.PHONY: help venv tools infra-up infra-down infra-status demo test test-unit lint audit bench chaos clean \
        replay dlq-list dlq-replay reconcile

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools  # the setuptools ensurepip bundles (65.5) has known advisories
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the package and dev tools

tools:  ## build kustomize into .tools/bin (idempotent; Go from the machine)
	bash infra/tools.sh

infra-up:  ## start Kafka (KRaft) + Cassandra from Maven Central jars (idempotent)
	bash infra/up.sh

infra-down:  ## stop both servers (WIPE=1 also deletes their data)
	bash infra/down.sh all $(if $(WIPE),--wipe,)

infra-status:  ## show what runs where, and the log files
	bash infra/status.sh

demo: venv infra-up  ## 10,000 sample payments through every stage and 3 mock banks, checked (DEMO_ARGS=--help)
	$(BIN)/settlement demo $(DEMO_ARGS)

lint: venv  ## ruff, mypy --strict, the layer contract, and the committed JSON Schema
	$(BIN)/ruff check settlement tests infra
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/settlement schema check

test-unit: venv tools  ## unit tests only (no network)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# Not in lint: lint is offline and gives the same answer for the same commit; the audit asks
# PyPI, whose answer changes with every new advisory. Here a known vulnerability fails the run;
# a package PyPI's data cannot cover from this machine (or PyPI down) only warns.
audit: venv  ## known vulnerabilities in .venv's packages, from PyPI (fails on any it cannot check)
	$(BIN)/python infra/audit.py

test: venv lint tools infra-up  ## lint + dependency audit + unit + integration + e2e fault injection, on the real stack
	@echo "dependency audit: a known vulnerability fails the build; an unchecked package only warns"
	$(BIN)/python infra/audit.py --unchecked warn
	SETTLEMENT_TEST_EXTERNAL_STACK=1 $(BIN)/pytest -q --durations=15 \
	  $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

bench: venv infra-up  ## every benchmark scenario, one summary table, bench-out/bench.json + PNG plots (BENCH_ARGS=--quick)
	$(BIN)/settlement bench all $(BENCH_ARGS)

chaos: venv infra-up  ## whole pipeline under seeded faults + the I1-I7 checker: make chaos RUNS=3 SEED=7 [PAYMENTS=5000] [FAULTS=4] [CHAOS_ARGS=]
	$(BIN)/settlement chaos --runs $(or $(RUNS),1) --payments $(or $(PAYMENTS),5000) --faults $(or $(FAULTS),4) $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

replay: venv  ## replay a topic: make replay TOPIC=payments.succeeded FROM=<offset|ISO time|earliest> [TO=] [PARTITION="0 3"] [GROUP=] [MODE=reset|republish] [DRY_RUN=1]
	$(if $(TOPIC),,$(error TOPIC is required, e.g. make replay TOPIC=payments.succeeded FROM=earliest DRY_RUN=1))
	$(if $(FROM),,$(error FROM is required: an offset, an ISO timestamp with offset, earliest or latest))
	$(BIN)/settlement replay --topic '$(TOPIC)' --from '$(FROM)' $(if $(TO),--to '$(TO)') \
	  $(foreach p,$(PARTITION),-p $(p)) \
	  $(if $(GROUP),--group '$(GROUP)') $(if $(MODE),--mode '$(MODE)') $(if $(DRY_RUN),--dry-run) $(REPLAY_ARGS)

dlq-list: venv  ## dead letters by reason, with their source [TOPIC=payments.succeeded.dlq]
	$(BIN)/settlement dlq list $(if $(TOPIC),--topic '$(TOPIC)')

dlq-replay: venv  ## send dead letters back to their source topic after a fix [TOPIC=] [REASON=] [DRY_RUN=1]
	$(BIN)/settlement dlq replay $(if $(TOPIC),--topic '$(TOPIC)') $(if $(REASON),--reason '$(REASON)') \
	  $(if $(DRY_RUN),--dry-run)

reconcile: venv  ## reconcile one day's bank statements against the ledger: make reconcile DATE=YYYY-MM-DD
	$(if $(DATE),,$(error DATE is required, e.g. make reconcile DATE=2026-03-02))
	$(BIN)/settlement reconcile --date '$(DATE)' $(RECONCILE_ARGS)

clean:  ## remove the venv and caches (not the fetched jars in .infra/ nor .tools/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The two commands: `make run` starts the service on SQLite; `make test` runs every test on SQLite and
# PostgreSQL. Both install what they need first.
SHELL := /bin/bash
VENV := .venv
PORTAL := .build/debug/portal
KEY_FILE := var/master.key

.PHONY: run test soak bench build build-tests deps test-deps venv clean-var

run: deps build $(KEY_FILE)
	$(PORTAL) serve --master-key-file $(KEY_FILE) $(ARGS)

build:
	swift build --product portal

build-tests:
	swift build --build-tests

$(KEY_FILE): | build
	@test -n "$$PORTAL_MASTER_KEY" || test -n "$$PORTAL_MASTER_KEY_FILE" || $(PORTAL) keys generate-master --out $(KEY_FILE)

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

PYTHON312 ?= $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))

venv: $(VENV)/.installed .venv312/.installed .venv-oscal/.installed

$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

# compliance-trestle, pinned to a release whose models are OSCAL 1.1.2, validates the evidence bundles' OSCAL
# documents; in a venv of its own (its pydantic pins would clash with the test tools').
.venv-oscal/.installed: requirements-oscal.txt
	python3 -m venv .venv-oscal
	.venv-oscal/bin/pip install -q -r requirements-oscal.txt
	touch $@

# aics-tlog (an independent transparency-log client) needs Python 3.12.
.venv312/.installed: requirements-tlog.txt
	$(PYTHON312) -m venv .venv312
	.venv312/bin/pip install -q -r requirements-tlog.txt
	touch $@

# Unit and HTTP tests (both backends), the OpenAPI validator, then the CLI and README acceptance scripts
# against a real server process on each backend.
test: test-deps venv build-tests
	scripts/with-postgres.sh scripts/test-all.sh

# The ledger benchmarks in release mode, in one run, against baselines measured in the same run (DESIGN
# section 8): PostgreSQL at its default durability (fsync on). Figures: stdout and var/bench/latest.md.
bench:
	@scripts/install-deps.sh bench
	swift build -c release --product portal
	swift build -c release --product portal-bench
	mkdir -p var/bench
	PG_FSYNC=on PORT=55433 scripts/with-postgres.sh .build/release/portal-bench --portal .build/release/portal --markdown var/bench/latest.md $(ARGS)

# The soak (Tests/soak/soak.py): a release build driven with every capability at once while faults are
# injected, invariants checked during and after; SOAK_MINUTES (default 10) per backend, SOAK_BACKEND sqlite,
# postgres or both (the default). Report: stdout and var/soak/latest.md; exit 1 when an invariant breaks.
SOAK_MINUTES ?= 10
SOAK_BACKEND ?= both
soak: test-deps venv
	swift build -c release --product portal
	.venv/bin/python Tests/soak/soak.py --minutes $(SOAK_MINUTES) --backend $(SOAK_BACKEND) --portal .build/release/portal

clean-var:
	rm -rf var

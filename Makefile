# The two commands that matter: `make run` (the whole stack) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: test-fast run test lint format bench clean record-histories lock fakes screenshots

# Install once, from the hashed lock file; reinstall only when it or pyproject.toml changes.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/recruitmail dev

# The Microsoft and Google fakes, for walking the OAuth journeys in a browser (see the README).
fakes: $(STAMP)
	$(BIN)/python -m tests.fakes.serve --require-admin-consent --block-google-app

# In parallel processes sharing one Temporal dev server (tests/conftest.py); TEST_PROCESSES=0
# runs everything in one process. Without PYTEST_ARGS the run is the whole suite, and the
# replay of its histories asks for a closed run of every workflow.
TEST_PROCESSES ?= 4
# Bytecode is written (an environment may say PYTHONDONTWRITEBYTECODE): the suite starts dozens
# of Python processes (workers, APIs, CLIs, stacks killed and restarted), and each would
# otherwise compile the project's modules again, about half a second apiece.
# Work stealing: a process that runs out of tests takes some from another's queue, so a few long
# whole-stack tests at the end of one queue do not keep the others waiting (PostgreSQL 4:04
# against 4:32-4:54 with the default even split, the same hour).
DIST = $(if $(filter 0,$(TEST_PROCESSES)),,--dist worksteal)
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= RECRUITMAIL_WHOLE_SUITE=$(if $(PYTEST_ARGS),,1) $(BIN)/pytest -q -n $(TEST_PROCESSES) $(DIST) $(PYTEST_ARGS)

# The quick loop (under a minute here): everything but the tests that start the whole stack
# (marked `stack` by tests/conftest.py): the domain, the parsers and corpora, activities
# through ActivityEnvironment, workflows against mocked activities. `make test` stays the gate.
test-fast: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n 3 --dist worksteal -m "not stack" $(PYTEST_ARGS)

# Photograph every page at phone and desktop width into docs/screenshots/ (the page tests).
screenshots: $(STAMP)
	RECRUITMAIL_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_pages.py

# Re-record tests/histories/ (the replay test's fixtures) from a full run of the suite.
record-histories: $(STAMP)
	RECRUITMAIL_RECORD_HISTORIES=1 $(BIN)/pytest -q -n 0 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark, each printing its figures beside baselines measured in the same run.
bench: $(STAMP)
	$(BIN)/python bench/send_throughput.py
	$(BIN)/python bench/inbound_throughput.py
	$(BIN)/python bench/bulk_send.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/privacy.py
	$(BIN)/python bench/mailbox_sync.py
	$(BIN)/python bench/large_files.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/profile.py
	$(BIN)/python bench/report.py

# Re-resolve the lock files after changing dependencies in pyproject.toml (see the README).
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(LOCK) --extra test -o requirements-dev.lock pyproject.toml
	$(LOCK) -c requirements-dev.lock -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .recruitmail .pytest_cache

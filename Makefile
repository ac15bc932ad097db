# One command runs every suite: `make test` (Rust, Python, JavaScript, React and
# dashboard in headless Chromium). It installs the Python and npm packages the suites
# need first (idempotent: a venv in clients/python/.venv, `npm ci` per package).
# System packages are not installed here: redis-server and chromium must be on the
# machine (`.ci/run` installs them with apt); a suite that needs one fails loudly.

SHELL := /bin/bash
export JOBWIRE_BIN ?= $(CURDIR)/target/debug/jobwire
VENV := clients/python/.venv
PY := $(VENV)/bin/python

.PHONY: test deps deps-python deps-node test-rust test-python test-js test-react test-dashboard lint

test: deps test-rust test-python test-js test-react test-dashboard
	@echo "== every suite passed"

deps: deps-python deps-node

deps-python:
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check './clients/python[dev,celery]'
	@# kosoku runs the Autobahn WebSocket conformance cases (crates/jobwire/tests/autobahn).
	@$(PY) -m pip install -q --disable-pip-version-check 'kosoku==0.1.0'

deps-node:
	@for p in clients/js clients/react dashboard; do \
	  if [ ! -d $$p/node_modules ] || [ $$p/package-lock.json -nt $$p/node_modules/.package-lock.json ]; then \
	    npm ci --prefix $$p --no-audit --no-fund --loglevel=error || exit 1; \
	  fi; \
	done
	@# @jobwire/react resolves @jobwire/client (file:../js) to its built dist/.
	@npm run --silent build --prefix clients/js

test-rust: deps-python
	cargo test --workspace

# The suites below drive the server binary ($(JOBWIRE_BIN)); `cargo test` built it.
$(JOBWIRE_BIN):
	cargo build -p jobwire

test-python: $(JOBWIRE_BIN)
	cd clients/python && .venv/bin/python -m pytest -q tests

test-js: $(JOBWIRE_BIN)
	npm test --prefix clients/js

test-react: $(JOBWIRE_BIN)
	npm test --prefix clients/react

test-dashboard: $(JOBWIRE_BIN)
	npm test --prefix dashboard

# Linters of the non-Rust packages (CI runs them with cargo fmt and clippy).
lint: deps
	cd clients/python && .venv/bin/ruff check src tests bench && .venv/bin/mypy
	npm run typecheck --prefix clients/js
	npm run typecheck --prefix clients/react
	npm run typecheck --prefix dashboard
	npm run check-dist --prefix dashboard

# A 10-minute soak against the release binary (not part of `make test`): idle watchers,
# jobs at 2-4 Hz, reconnect storms, RSS and replay-tail bytes over time, and a check
# that no watcher missed or doubled a seq. Writes soak-output/soak.{csv,json,png}.
.PHONY: soak
soak: deps-python
	cargo build --release -p jobwire
	$(PY) -m pip install -q --disable-pip-version-check matplotlib
	JOBWIRE_BIN=$(CURDIR)/target/release/jobwire $(PY) crates/jobwire-bench/soak/soak.py --out soak-output $(SOAK_ARGS)

# persistio developer tasks. The one command is `make test`: it builds the venv, starts the real
# servers (scripts/services), then runs ruff, mypy, the docs build and the whole pytest suite
# against them (with the packaging check and the browser test).
#
#   make demo        the check-in game's short simulation on embedded defaults (no servers)
#   make test        everything below, in that order; the steps after the servers all run, and
#                    the target fails at the end if one of them failed
#   make venv        .venv with the package (editable, [all,examples]) and the dev and docs
#                    groups; redone only when pyproject.toml changes
#   make services    scripts/services start (skipped when all four PERSISTIO_*_URL are set)
#   make browser     scripts/browser install: Debian's chromium, for the page's browser test
#   make lint | typecheck | pytest      one step alone (pytest: PYTEST_ARGS="-k redis -x")
#   make docs        the documentation site on http://127.0.0.1:8000, rebuilt on every change
#   make docs-build  mkdocs build --strict into build/site (what `make test` runs)
#   make status | services-stop         scripts/services status / stop
#   make test-cluster  scripts/services start --cluster (a Redis Cluster of 3 masters + 3 replicas
#                    and a 3-node Cassandra cluster beside the single PostgreSQL), then the
#                    contract suite, the worker-process tests and tests/cluster (node failures
#                    under load) against them; fails if the clusters cannot start
#   make cluster-status | cluster-stop  scripts/services status / stop --cluster
#   make clean       caches;  make distclean: also stop the servers, remove .venv and .services
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.persistio-installed
SERVICES := bash scripts/services
PYTEST_ARGS ?=
# Material for MkDocs prints a banner about MkDocs 2.0 on every build: the site is on MkDocs 1.x
export NO_MKDOCS_2_WARNING := 1

URLS := PERSISTIO_TRANSITORY_URL PERSISTIO_VOLATILE_URL PERSISTIO_ACID_URL PERSISTIO_AMORPHOUS_URL
ALL_URLS_SET := $(if $(strip $(foreach v,$(URLS),$(if $($(v)),,$(v)))),,yes)

# Puts the running servers' PERSISTIO_*_URL into the recipe's shell, keeping those already set.
define service_env
if [ "$(ALL_URLS_SET)" != yes ]; then
  service_env=$$($(SERVICES) env)
  while IFS= read -r line; do
    var=$${line#export }; var=$${var%%=*}
    [ -n "$${!var:-}" ] || eval "$$line"
  done <<<"$$service_env"
fi
endef

.PHONY: test demo venv services browser lint typecheck docs docs-build pytest status services-stop \
	test-cluster cluster-status cluster-stop clean distclean

# What make test-cluster runs on the clusters: the same suites, pointed at them by the variables
# that scripts/services env --cluster prints (tests/conftest.py), plus the cluster's own tests.
CLUSTER_TESTS := tests/contract tests/integration/test_worker_processes.py \
	tests/integration/test_worker_takeover.py tests/cluster

# The check-in game on embedded defaults: no server needed, about half a minute.
demo: venv
	@bash scripts/demo

test: venv services
	@$(service_env)
	failed=()
	step() { local name=$$1; shift; echo "==> $$name: $$*"; "$$@" || failed+=("$$name"); }
	step "ruff check" $(BIN)/ruff check .
	step "ruff format" $(BIN)/ruff format --check .
	step mypy $(BIN)/mypy
	step docs $(BIN)/mkdocs build --strict
	step browser bash scripts/browser install
	step pytest $(BIN)/python -m pytest $(PYTEST_ARGS)
	if [ "$${#failed[@]}" -gt 0 ]; then echo "make test FAILED: $${failed[*]}" >&2; exit 1; fi
	echo "make test passed"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "persistio needs Python >= 3.11; try: make PYTHON=python3.12" >&2; exit 1; }
	if [ ! -x $(BIN)/python ]; then
	  echo "==> creating $(VENV)"
	  $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
	fi
	echo "==> installing persistio[all,examples] and the dev and docs groups into $(VENV)"
	# pip >= 25.1 reads [dependency-groups] (--group)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e '.[all,examples]' --group dev --group docs
	touch $@

services:
ifeq ($(ALL_URLS_SET),yes)
	@echo "==> all PERSISTIO_*_URL are set: using those servers, starting none"
else
	@$(SERVICES) start
endif

lint: venv
	@$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	@$(BIN)/mypy

browser:
	@bash scripts/browser install

docs: venv
	@$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: venv
	@$(BIN)/mkdocs build --strict

pytest: venv services
	@$(service_env)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

status:
	@$(SERVICES) status

# The clusters' URLs replace any PERSISTIO_*_URL of the environment: these suites are for them.
test-cluster: venv
	@t0=$$SECONDS
	$(SERVICES) start --cluster || { echo "make test-cluster: the clusters did not start" >&2; exit 1; }
	cluster_env=$$($(SERVICES) env --cluster)
	eval "$$cluster_env"
	echo "==> pytest --cluster on $$PERSISTIO_TRANSITORY_URL and $$PERSISTIO_AMORPHOUS_URL"
	status=0
	$(BIN)/python -m pytest --cluster $(CLUSTER_TESTS) $(PYTEST_ARGS) || status=$$?
	echo "make test-cluster: $$([ $$status = 0 ] && echo passed || echo FAILED) after $$((SECONDS - t0))s"
	exit $$status

cluster-status:
	@$(SERVICES) status --cluster

cluster-stop:
	@$(SERVICES) stop --cluster

services-stop:
	@$(SERVICES) stop

clean:
	@rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist \
	  examples/checkin_game/screenshot.png
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	@$(SERVICES) stop
	$(SERVICES) stop --cluster
	rm -rf $(VENV) .services

# The two set-up commands are `make dev` and `make test`; each installs what it
# needs first (hack/bootstrap.sh: Debian packages, the locked venv, kubectl and
# helm, and the control plane built from Go modules, cached by version).
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST := .venv/bin/pytest
# make test runs every tier but the tests marked slow; make test-full runs those too.
PYTEST_ARGS ?=
# make bench BENCH=claims runs one benchmark; empty runs them all.
BENCH ?=

.PHONY: help bootstrap bootstrap-python dev test test-full test-unit lint lint-docker format bench deploy-manifests image node-images clean

help:
	@echo "make dev        local control plane + PostgreSQL + operator + sample presets"
	@echo "make test       install what is needed, lint, run unit/ledger/e2e/chart/node tests (not slow)"
	@echo "make test-full  the same with the slow tests"
	@echo "make lint       ruff, mypy --strict, import contracts"
	@echo "make bench      benchmarks (bench/), results in docs/benchmarks.md"
	@echo "make deploy-manifests  regenerate deploy/prewarm.yaml from the chart"
	@echo "make node-images       build the real node's images with buildah (cached by content)"

bootstrap:
	@bash hack/bootstrap.sh all

bootstrap-python:
	@bash hack/bootstrap.sh python

dev: bootstrap
	$(PY) -m prewarm dev

lint: bootstrap-python
	.venv/bin/ruff check operator tests bench
	.venv/bin/ruff format --check operator tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports

format: bootstrap-python
	.venv/bin/ruff check --fix operator tests bench
	.venv/bin/ruff format operator tests bench

test-unit: bootstrap-python
	$(PYTEST) -m unit $(PYTEST_ARGS)

test: bootstrap lint
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-full: bootstrap lint
	$(PYTEST) $(PYTEST_ARGS)

bench: bootstrap
	PYTHONPATH=operator:. $(PY) -m bench $(BENCH)

lint-docker: bootstrap-python
	.venv/bin/hadolint --config .hadolint.yaml Dockerfile

# deploy/prewarm.yaml embeds the CRDs: regenerate it after changing crds/ or the chart.
deploy-manifests: bootstrap
	sh deploy/generate.sh

# Needs a Docker engine (not on our CI machines; see docs/install.md for kind).
image:
	docker build -t prewarm:dev .

# The same Dockerfile without a Docker engine: buildah on a Debian base made by
# mmdebstrap, as the node tier (tests/node) uses it; prints NAME REF OCI-ARCHIVE.
node-images:
	bash hack/build-node-images.sh all

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache

# Two commands on a fresh machine with Python 3.11+, make and git: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.yaml
USER_HANDLE ?= alice
IMAGE ?= marvin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit install clean bench unleash image image-test

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/marvin --config $(CONFIG) db upgrade
	$(BIN)/marvin --config $(CONFIG) shell --user $(USER_HANDLE)

lint: $(STAMP)
	$(BIN)/ruff check marvin migrations tests benchmarks scripts/image-test
	$(BIN)/ruff format --check marvin migrations

typecheck: $(STAMP)
	$(BIN)/mypy marvin

# A real Unleash server (and the Node 22 it needs), pinned, from the npm registry.
unleash:
	tests/servers/install-unleash

# Test files spread over the machine's cores (each file on one worker, so a file's servers
# start once).
unit: $(STAMP) unleash
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test: lint typecheck unit

# The container image, IMAGE:<version>, with docker or podman, whichever works here (where no
# registry is reachable, ../shared/tools/container-base-image makes its base first).
image:
	scripts/build-image $(IMAGE)

# The image run as a container runtime runs it, on a fresh /data, against the loopback Slack
# (docker or podman run where they work; else chroot into its root filesystem, as root).
image-test: $(STAMP) image
	$(BIN)/python scripts/image-test $(IMAGE)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis marvin.db marvin.db-* .cache/unleash

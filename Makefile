# The active virtualenv when there is one, else a project .venv: a distribution's python3
# refuses installs outside a virtualenv (PEP 668), so nothing here installs system-wide.
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PYTHON := $(VENV)/bin/python
# Stamps, so a second `make demo` or `make test` does not reinstall.
INSTALLED := $(VENV)/.atkproxy-installed
NODE_INSTALLED := tests/oauth/node_modules/.package-lock.json

.PHONY: install test lint demo bench e2e constraints image

install: $(INSTALLED) $(NODE_INSTALLED)

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# The package with its test extras (editable), into the virtualenv.
$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The real OAuth2 token server the callback-auth tests start (Node 20).
$(NODE_INSTALLED): tests/oauth/package-lock.json
	cd tests/oauth && npm ci --no-audit --no-fund --loglevel=error

lint: $(INSTALLED)
	$(PYTHON) -m ruff check atkproxy tests
	$(PYTHON) -m mypy

test: install lint
	$(PYTHON) -m pytest -q

demo: $(INSTALLED)
	$(PYTHON) -m atkproxy demo

# A real pod: image built with podman from a debootstrapped base, played with podman kube play.
e2e: $(INSTALLED)
	PYTHON=$(PYTHON) bash deploy/e2e.sh

# The image's pins: the runtime dependencies as a fresh install resolves them today.
constraints:
	rm -rf build/lock && python3 -m venv build/lock
	build/lock/bin/pip install --quiet --disable-pip-version-check .
	{ echo "# Pinned runtime dependencies for the container image (pyproject.toml keeps ranges)."; \
	  echo "# Regenerate with: make constraints"; \
	  build/lock/bin/pip freeze --exclude atkproxy; } > constraints.txt
	rm -rf build/lock

bench:
	bash benchmarks/run.sh

PYTHON ?= python3

.PHONY: install test lint demo bench

# Python packages, and the Node package of the real OAuth2 token server the tests start
install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	cd tests/oauth && npm ci --no-audit --no-fund --loglevel=error

lint:
	ruff check atkproxy tests
	mypy

test: lint
	$(PYTHON) -m pytest -q

demo:
	$(PYTHON) -m atkproxy demo

bench:
	bash benchmarks/run.sh

PYTHON ?= python3

.PHONY: install test lint demo bench

install:
	$(PYTHON) -m pip install -e '.[test]'

lint:
	ruff check atkproxy tests
	mypy

test: lint
	$(PYTHON) -m pytest -q

demo:
	atkproxy demo

bench:
	bash benchmarks/run.sh

# dbmesh developer commands. Everything runs from the project venv .venv (made by `make install`).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra --durations=10
# pytest exits 5 when it collected no tests (e.g. an empty tests/unit while it is being written).
NO_TESTS_OK := || [ $$? -eq 5 ]

.PHONY: help install build test test-unit test-integration lint bench demo demo-stop clean

help:
	@echo "make install           OS packages, .venv, pip install -e '.[test]', node test deps"
	@echo "make build             recompile the Cython wire layer in place"
	@echo "make test              install, build, run the whole test suite"
	@echo "make test-unit         unit tests only (no servers)"
	@echo "make test-integration  integration tests (throwaway MariaDB, dbmesh subprocesses)"
	@echo "make lint              ruff + mypy (strict on dbmesh)"
	@echo "make bench             sysbench point-select: MariaDB direct vs byte relay vs dbmesh"
	@echo "make demo / demo-stop  a MariaDB backend + dbmesh on 127.0.0.1:3307"
	@echo "make clean             remove build products, caches and the demo state"

install:
	scripts/install.sh

build:
	$(PY) setup.py -q build_ext --inplace

test: install build
	$(PYTEST) -q tests $(NO_TESTS_OK)

test-unit: build
	$(PYTEST) -q tests/unit $(NO_TESTS_OK)

test-integration: build
	$(PYTEST) -q tests/integration $(NO_TESTS_OK)

lint:
	$(VENV)/bin/ruff check dbmesh tests benchmarks
	$(VENV)/bin/mypy dbmesh

bench: install build
	$(PY) benchmarks/bench_mysql_point_select.py --update-readme
	$(PY) benchmarks/bench_pg_select.py --update-readme
	$(PY) benchmarks/bench_sharded.py --update-readme
	$(PY) benchmarks/bench_governance.py --update-readme

demo:
	scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

clean:
	-scripts/demo.sh stop
	rm -rf build dist *.egg-info .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find dbmesh -name '*.so' -delete
	find dbmesh/_wire -name '*.c' -delete
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

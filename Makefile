# One entry point for people and CI.  `make test` and `make report` create the
# virtual environment on first use.  `make book` builds the notebooks, executed, and the docs
# as a static website in build/book/html (BOOK_PROFILE=ci by default; docs/book.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOOK_PROFILE ?= ci
MATHJAX_VERSION := 3.2.2
MATHJAX := $(VENV)/mathjax/.installed-$(MATHJAX_VERSION)

.PHONY: install lint format test test-fast report bench clean-cache book book-tools

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install; fi
	touch $(STAMP)

install: $(STAMP)

# ruff (lint and format check, the notebooks included) and mypy (the package), as configured in pyproject.toml;
# CI runs it before the tests (.ci/run), pre-commit runs ruff on each commit (CONTRIBUTING.md)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# rewrites files in place: ruff's import order and fixes, then ruff format (the notebooks too)
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the suite in parallel processes (pytest-xdist: one per core, at most 4; each test at one torch
# thread, or OMP_NUM_THREADS); TEST_ARGS adds pytest options, e.g. TEST_ARGS="-n 0" runs it serially
TEST_ARGS ?=
XDIST := -n auto --maxprocesses 4 --dist worksteal

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) $(TEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow" $(TEST_ARGS)

report: $(STAMP)
	$(VENV)/bin/mnemonic-mu report --profile laptop

# the book's MathJax (npm, pinned; mnemonic_mu/drivers/book.py checks the version); Sphinx,
# MyST-NB and the theme come with make install
$(MATHJAX): | $(STAMP)
	npm install --prefix $(VENV)/mathjax --no-audit --no-fund --save-exact mathjax@$(MATHJAX_VERSION)
	touch $(MATHJAX)

book-tools: $(STAMP) $(MATHJAX)

book: book-tools
	$(PY) -m mnemonic_mu.drivers.book --profile $(BOOK_PROFILE)

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean-cache:
	rm -rf data/cache

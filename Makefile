# spikelearn: `make demo` (install + the two-step main job) and `make test` (install + the whole suite).
# Both create .venv from the repo's own files. TORCH pins the CPU wheel this project's machines carry;
# on a GPU machine use e.g. `make demo TORCH=torch` to get your CUDA build (pyproject only asks torch>=2.4).
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(PY) scripts/bench_spectral.py
	$(PY) scripts/bench_step.py

clean:
	rm -rf $(VENV) runs outputs .pytest_cache

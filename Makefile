# netae: `make demo` and `make test` work on a fresh clone with only Python 3.11.
# The development venv holds every extra (train, parquet, dev); `pip install .` alone is the
# scorer without torch (see README, "Set up").
# torch is installed first and on its own: a bare requirement with no torch present would pull a
# CUDA build of several GB. GPU users override it, e.g.
#   make TORCH_SPEC='torch==2.13.0' TORCH_INDEX='--index-url https://download.pytorch.org/whl/cu126'
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
DEMO := demo-output

.PHONY: venv demo test check lint typecheck samples golden bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; run make PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX) '$(TORCH_SPEC)'
	$(BIN)/python -m pip install -q -e '.[train,parquet,dev]'
	touch $@

demo: venv
	@mkdir -p $(DEMO)
	$(BIN)/netae train sample_pcaps/normal -o $(DEMO)/model.netae --seed 0
	@echo "== anomalies per source host =="
	$(BIN)/netae score sample_pcaps/mixed.pcap -m $(DEMO)/model.netae --group-by host || [ $$? -eq 1 ]
	@echo "== the most anomalous flows =="
	$(BIN)/netae score sample_pcaps/mixed.pcap -m $(DEMO)/model.netae --format table --limit 15 || [ $$? -eq 1 ]

test: venv
	$(BIN)/python -m pytest -p no:cacheprovider

lint: venv
	$(BIN)/ruff format --check netae tests bench sample_pcaps
	$(BIN)/ruff check netae tests bench sample_pcaps

typecheck: venv
	$(BIN)/mypy netae

check: lint typecheck test

samples: venv
	$(BIN)/python sample_pcaps/generate.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache

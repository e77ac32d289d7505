# The README's two commands. Each creates .venv if needed and installs the project before running.
#   make demo   generate keypoints and an MP4 from the bundled sample inputs
#   make test   run the whole test suite
#   make results  rebuild the shipped model and docs/results.md's evaluation from the shared clips (about 1 h on
#                 2 CPU cores; not part of demo or test)
#   make cv       the cross-validation over the train and val people that chose the shipped model (about 1.5 h)
# On machines without an NVIDIA GPU the CPU build of torch is installed (set TORCH_SPEC / TORCH_INDEX to override,
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu on a machine whose pip would otherwise pick a CUDA build).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.a2k-installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC ?= $(if $(HAS_GPU),torch,torch==2.13.0)
TORCH_INDEX ?=
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
DEMO_OUT ?= demo-output
PYTEST_ARGS ?=

RESULTS_DATA ?= runs/voxkp-shared
# intra-op threads of each training: the shipped weights were trained with 1 (the same count reproduces them byte for
# byte; another count sums floats in another order and gives other weights of the same quality)
RESULTS_THREADS ?= 1
RESULTS_RUNS := a2k-default a2k-default-audio-only a2k-default-no-piv a2k-default-no-disc a2k-default-paper-width
# the shipped model: an ensemble of these seeds of this recipe (chosen by `make cv`, docs/results.md)
SHIPPED_RECIPE ?= default-ema
SHIPPED_SEEDS ?= 0 1 2

# cross-validation (docs/results.md): seeds of the default recipe and of its EMA variant, 4 folds each, CV_JOBS at once
CV_BASE_SEEDS ?= 0 1 2 3 4
CV_EMA_SEEDS ?= 0 1 2
CV_JOBS ?= 2

.PHONY: demo test install clean results cv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(wildcard plugins/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]" $(foreach d,$(PLUGIN_DIRS),-e $(d))
	@touch $@

demo: $(STAMP)
	$(BIN)/a2k generate --image a2k_toolkit/samples/astronaut.jpg --audio a2k_toolkit/samples/speech.wav \
		--config configs/demo.yaml \
		--keypoints-out $(DEMO_OUT)/keypoints.npy --video-out $(DEMO_OUT)/demo.mp4
	@echo "demo written to $(DEMO_OUT)/ (keypoints.npy, demo.mp4)"

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The shipped default model and the evaluation in docs/results.md: build the Vox-KP dataset of the shared clips,
# train the recipe, its three ablations and paper-width twin, and the seeds of the shipped ensemble (rerunning resumes
# a finished or interrupted run), bundle the ensemble into runs/a2k-shipped, evaluate on the held-out test identities.
# Install it as the default model with: cp -r runs/a2k-shipped/* a2k_toolkit/weights/
results: $(STAMP)
	test -f $(RESULTS_DATA)/manifest.json || $(BIN)/a2k dataset build configs/data/shared_clips.csv $(RESULTS_DATA) \
		--detect-every 2
	for run in $(RESULTS_RUNS); do \
		if test -f runs/$$run/latest/config.json; then resume=--resume; else resume=; fi; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/$${run#a2k-}.yaml --no-progress $$resume || exit 1; \
	done
	for s in $(SHIPPED_SEEDS); do d=runs/a2k-shipped-s$$s; \
		if test -f $$d/latest/config.json; then resume=--resume; else resume=; fi; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/$(SHIPPED_RECIPE).yaml --seed $$s \
			--run-dir $$d --no-progress $$resume || exit 1; \
	done
	$(BIN)/a2k ensemble runs/a2k-shipped $(foreach s,$(SHIPPED_SEEDS),runs/a2k-shipped-s$(s)/latest) \
		--description "configs/train/$(SHIPPED_RECIPE).yaml, seeds $(SHIPPED_SEEDS)"
	$(BIN)/a2k eval --clips $(RESULTS_DATA) --split test --config configs/eval/results.yaml --out docs/results
	$(BIN)/a2k eval --clips $(RESULTS_DATA) --split test --config configs/eval/shipped.yaml --out docs/results/shipped

# The cross-validation that chose the shipped model (docs/results.md): each candidate's seeds trained on 3 of 4
# folds of the train and val people (about 5 min each on one thread; 32 runs, CV_JOBS at a time: 1.5 h with 2;
# resumed when rerun), then every fold's models scored on the people it held out, into docs/results/cv.
cv: $(STAMP)
	test -f $(RESULTS_DATA)/manifest.json || $(BIN)/a2k dataset build configs/data/shared_clips.csv $(RESULTS_DATA) \
		--detect-every 2
	mkdir -p runs/cv
	{ for s in $(CV_BASE_SEEDS); do for f in 0 1 2 3; do echo "default-cv base $$f $$s"; done; done; \
	  for s in $(CV_EMA_SEEDS); do for f in 0 1 2 3; do echo "default-cv-ema ema $$f $$s"; done; done; } | \
	xargs -P $(CV_JOBS) -L 1 sh -c 'd=runs/cv/$$1-f$$2-s$$3; r=; test -f $$d/latest/config.json && r=--resume; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/$$0.yaml --fold $$2/4 --seed $$3 \
		--run-dir $$d --no-progress $$r > $$d.log 2>&1 || { echo "failed: $$d (see $$d.log)"; exit 255; }'
	$(BIN)/a2k eval --clips $(RESULTS_DATA) --split train,val --folds 4 --config configs/eval/cv.yaml --out docs/results/cv

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

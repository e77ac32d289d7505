# The README's two commands. Each creates .venv if needed and installs the project before running.
#   make demo   generate keypoints and an MP4 from the bundled sample inputs
#   make test   check formatting and lint (ruff), then run the whole test suite
#   make cv       the selection over every person of ../shared/data/clips.csv that chose the shipped model: the
#                 dataset, 3-fold cross-validation of the candidates, the reports in docs/results/selection (~4.5 h on
#                 2 CPU cores; not part of demo or test)
#   make results  the shipped model: the chosen recipes trained on every person, bundled with its settings (~25 min)
#   make table1   the earlier Table 1 on the 25 first shared clips (5 test people) and its ablations (about 1 h)
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
# intra-op threads of each training: runs are byte-reproducible at a fixed count (another count sums floats in
# another order and gives other weights of the same quality)
RESULTS_THREADS ?= 1
RESULTS_RUNS := a2k-default a2k-default-audio-only a2k-default-no-piv a2k-default-no-disc a2k-default-paper-width
TABLE1_RECIPE ?= default-ema
TABLE1_SEEDS ?= 0 1 2

# the selection over every person of the shared data (docs/results.md, "Selection"): all of clips.csv, 3 folds of
# person groups; stage 1 = one seed of each candidate (config in configs/train/shipped/:label), stage 2 = more seeds
# of the winner, stage 3 = a new recipe's seeds (and averages of several recipes' seeds)
ALL_DATA ?= runs/voxkp-all
CLIPS_CSV ?= ../shared/data/clips.csv
CV_DIR ?= runs/cv-all
CV_CANDIDATES ?= all-cv:A all-cv-balanced:B all-cv-vad:C all-cv-phonetic:D
CV_WINNER ?= all-cv-balanced:B
CV_WINNER_SEEDS ?= 1 2
CV_STAGE3 ?= all-cv-nose:E
CV_STAGE3_SEEDS ?= 0 1 2
CV_STAGE4 ?= all-cv-nose-unbalanced:F all-cv-nose-window:G
# stage 6: E with the mouth's training terms doubled (H: mouth L1, J: L_Sync), seed 0
CV_STAGE6 ?= all-cv-nose-mouth4:H all-cv-nose-sync4:J
# stage 7: H's seeds 1 and 2 (averages with H members)
CV_STAGE7 ?= all-cv-nose-mouth4:H
CV_STAGE7_SEEDS ?= 1 2
# the fold runs of candidate $(1) (CONFIG:LABEL) with each seed of $(2): one "CONFIG LABEL FOLD SEED" line each
cv_runs = for s in $(2); do for f in 0 1 2; do echo "$(firstword $(subst :, ,$(1))) $(lastword $(subst :, ,$(1))) $$f $$s"; done; done;
CV_JOBS ?= 2
CV_FAMILY_CAP ?= 200
# the shipped model: the chosen recipes on every person (configs/train/shipped/RECIPE.yaml:seed), averaged, with the
# chosen inference settings
SHIPPED_MEMBERS ?= shipped-nose:0 shipped-nose:1 shipped-nose:2 shipped-nose-unbalanced:0
SHIPPED_DEFAULTS ?= --default head_motion=3 --default mouth_scale=1 --default blink_interval=3.5 --default energy_mouth=0.5 --default keep_mouth_shape=1 --default mouth_prior=0.75
# the mouth prior (stage 8) is fitted on the clips of this recipe (every person; in `make cv` per fold)
PRIOR_RECIPE ?= shipped-nose
CV_PRIOR_RECIPE ?= all-cv-nose

.PHONY: demo test lint install clean results cv table1 all-data

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(wildcard plugins/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]" $(foreach d,$(PLUGIN_DIRS),-e $(d))
	@touch $@

demo: $(STAMP)
	$(BIN)/a2k generate --image a2k_toolkit/samples/astronaut.jpg --audio a2k_toolkit/samples/speech.wav \
		--config configs/pipeline/demo.yaml \
		--keypoints-out $(DEMO_OUT)/keypoints.npy --video-out $(DEMO_OUT)/demo.mp4
	@echo "demo written to $(DEMO_OUT)/ (keypoints.npy, demo.mp4)"

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# formatting and lint (configured in pyproject.toml): `make test` fails on drift; `ruff format . && ruff check --fix .`
# repairs most of it
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

$(ALL_DATA)/manifest.json:
	$(BIN)/a2k dataset build $(CLIPS_CSV) $(ALL_DATA) --detect-every 2 --min-frames 16 --workers 2

all-data: $(STAMP) $(ALL_DATA)/manifest.json

# The selection (docs/results.md): each candidate's fold runs (about 5 min each on one thread, CV_JOBS at a time;
# resumed when rerun), then every fold's models scored on the people it held out, one report per audio front-end.
cv: $(STAMP) $(ALL_DATA)/manifest.json
	mkdir -p $(CV_DIR)
	{ $(foreach c,$(CV_CANDIDATES),$(call cv_runs,$(c),0)) $(call cv_runs,$(CV_WINNER),$(CV_WINNER_SEEDS)) \
	  $(call cv_runs,$(CV_STAGE3),$(CV_STAGE3_SEEDS)) $(foreach c,$(CV_STAGE4) $(CV_STAGE6),$(call cv_runs,$(c),0)) \
	  $(call cv_runs,$(CV_STAGE7),$(CV_STAGE7_SEEDS)) } | \
	xargs -P $(CV_JOBS) -L 1 sh -c 'd=$(CV_DIR)/$$1-f$$2-s$$3; r=; test -f $$d/latest/config.json && r=--resume; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/shipped/$$0.yaml --fold $$2/3 --seed $$3 \
		--run-dir $$d --no-progress $$r > $$d.log 2>&1 || { echo "failed: $$d (see $$d.log)"; exit 255; }'
	for f in 0 1 2; do $(BIN)/a2k mouth-prior configs/train/shipped/$(CV_PRIOR_RECIPE).yaml --fold $$f/3 \
		--out $(CV_DIR)/mouth-prior-f$$f.safetensors || exit 1; done
	for fe in logmel vad phonetic stage2 stage3 stage4 stage5 stage5b stage6 stage7 stage8 explore-g; do \
		$(BIN)/a2k eval --clips $(ALL_DATA) --split train,val,test --folds 3 --max-per-family $(CV_FAMILY_CAP) \
			--config configs/eval/selection/$$fe.yaml --out docs/results/selection/$$fe || exit 1; \
	done
	$(BIN)/a2k eval --clips $(ALL_DATA) --split train,val,test --folds 3 --max-per-family $(CV_FAMILY_CAP) \
		--photo-gap 12 --config configs/eval/selection/photo-gap.yaml --out docs/results/selection/photo-gap

# The shipped default model: the chosen recipe trained on every person of the shared data (seeds averaged, the
# chosen inference settings stored with it) into runs/a2k-shipped. Install it as the default model with:
#   rm -rf a2k_toolkit/weights/member-* && cp -r runs/a2k-shipped/* a2k_toolkit/weights/
results: $(STAMP) $(ALL_DATA)/manifest.json
	for m in $(SHIPPED_MEMBERS); do r=$${m%%:*}; s=$${m##*:}; d=runs/a2k-$$r-s$$s; \
		if test -f $$d/latest/config.json; then resume=--resume; else resume=; fi; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/shipped/$$r.yaml --seed $$s \
			--run-dir $$d --no-progress $$resume || exit 1; \
	done
	$(BIN)/a2k mouth-prior configs/train/shipped/$(PRIOR_RECIPE).yaml --out runs/a2k-mouth-prior.safetensors
	$(BIN)/a2k ensemble runs/a2k-shipped $(foreach m,$(SHIPPED_MEMBERS),runs/a2k-$(subst :,-s,$(m))/latest) \
		$(SHIPPED_DEFAULTS) --mouth-prior runs/a2k-mouth-prior.safetensors \
		--description "configs/train/shipped/ on every person of clips.csv: $(SHIPPED_MEMBERS); mouth prior: $(PRIOR_RECIPE)"

# The earlier Table 1 (docs/results.md, "Table 1 on real data"): the 25 first shared clips split by identity, the
# recipe, its three ablations and paper-width twin, evaluated on the 5 test identities.
table1: $(STAMP)
	test -f $(RESULTS_DATA)/manifest.json || $(BIN)/a2k dataset build configs/data/first-25-clips.csv $(RESULTS_DATA) \
		--detect-every 2
	for run in $(RESULTS_RUNS); do \
		if test -f runs/$$run/latest/config.json; then resume=--resume; else resume=; fi; \
		OMP_NUM_THREADS=$(RESULTS_THREADS) $(BIN)/a2k train configs/train/earlier/$${run#a2k-}.yaml --no-progress $$resume || exit 1; \
	done
	$(BIN)/a2k eval --clips $(RESULTS_DATA) --split test --config configs/eval/earlier/table1.yaml --out docs/results

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

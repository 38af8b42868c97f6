# `make demo` and `make test` create .venv and install everything on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The demo (target) set: the synthetic `demo` preset (docs/demo.md). Each set is rewritten whenever the generator
# changes, so an older set (e.g. the former `demo`, now `demo-v1`) is never trained on by mistake.
GENERATOR := vireid_plugins/data/synthetic.py
DEMO_DATA := datasets/synthetic/demo/SYSU-MM01
DEMO_META := $(DEMO_DATA)/synthetic_meta.json
# Labelled visible-only source set (other identities and cameras) and the model pre-trained on it: the
# stand-in for DOTLA's Market-1501 pre-training that the unsupervised demos start from.
SOURCE_DATA := datasets/synthetic/source/SYSU-MM01
SOURCE_META := $(SOURCE_DATA)/synthetic_meta.json
SOURCE_WEIGHTS := logs/synthetic/source_pretrain/model_final.pth
# The same for the small ViT of the CA multi-module demo
SOURCE_WEIGHTS_VIT := logs/synthetic/source_pretrain_vit/model_final.pth

.PHONY: install test demo demo-supervised demo-usl demo-dotla demo-mult demo-ca-vit demo-handcrafted source-pretrain source-pretrain-vit ablation lint bench bench-models clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,dev,export]"
	# fast-reid 1.4.0 pins torch 1.13: install it without its pins (its real needs are in setup.py)
	$(PY) -m pip install --quiet --no-deps fastreid==1.4.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

$(DEMO_META): $(GENERATOR) | $(STAMP)
	$(PY) tools/make_synthetic_vireid.py --layout sysu --preset demo --seed 0 --workers 2 --overwrite --out $(DEMO_DATA)

$(SOURCE_META): $(GENERATOR) | $(STAMP)
	$(PY) tools/make_synthetic_vireid.py --layout sysu --preset demo --seed 1 --workers 2 --overwrite --out $(SOURCE_DATA)

$(SOURCE_WEIGHTS): $(SOURCE_META) configs/Synthetic/source_pretrain.yml configs/Synthetic/agw_supervised.yml | $(STAMP)
	$(PY) tools/train_net.py --config-file configs/Synthetic/source_pretrain.yml

source-pretrain: $(SOURCE_WEIGHTS)

# DOTLA's stage 0 (Cluster-Contrast per modality) on the demo set: the start of the ablation's "from stage 0" row
STAGE0_WEIGHTS := logs/synthetic/dotla_stage0/model_final.pth
$(STAGE0_WEIGHTS): $(DEMO_META) $(SOURCE_WEIGHTS) configs/Synthetic/dotla_stage0.yml configs/Synthetic/usl_baseline.yml | $(STAMP)
	$(PY) tools/train_net.py --config-file configs/Synthetic/dotla_stage0.yml

# One thread: the start of docs/ca_vit.md's ablation, bit for bit (thread counts change float reductions)
$(SOURCE_WEIGHTS_VIT): $(SOURCE_META) configs/Synthetic/source_pretrain_vit.yml configs/Synthetic/ca_vit.yml | $(STAMP)
	$(ONE_THREAD) $(PY) tools/train_net.py --config-file configs/Synthetic/source_pretrain_vit.yml

source-pretrain-vit: $(SOURCE_WEIGHTS_VIT)

SUMMARY := $(PY) tools/demo_summary.py "source-pretrained start=logs/synthetic/dotla:initial" \
	"DOTLA + NCLR + CNCR=logs/synthetic/dotla" "supervised ceiling=logs/synthetic/agw_supervised"
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# The demo: DOTLA + NCLR + CNCR, unsupervised on the demo set from the source-pretrained model, and beside it the
# supervised ceiling (the demo labels); the two runs share the 2 cores, one thread and one loader worker each, as
# the seeds of docs/demo.md ran. Then the start, the result and the ceiling side by side.
demo: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS)
	@mkdir -p logs/synthetic
	@echo "training DOTLA and the supervised ceiling side by side (about 5 minutes): logs/synthetic/{dotla,agw_supervised}.log"
	$(ONE_THREAD) $(PY) tools/train_net.py --config-file configs/Synthetic/dotla.yml DATALOADER.NUM_WORKERS 1 \
		> logs/synthetic/dotla.log 2>&1 & dotla=$$!; \
	$(ONE_THREAD) $(PY) tools/train_net.py --config-file configs/Synthetic/agw_supervised.yml DATALOADER.NUM_WORKERS 1 \
		> logs/synthetic/agw_supervised.log 2>&1; ceiling=$$?; \
	wait $$dotla; status=$$?; \
	if [ $$status -ne 0 ]; then tail -n 30 logs/synthetic/dotla.log; exit 1; fi; \
	if [ $$ceiling -ne 0 ]; then tail -n 30 logs/synthetic/agw_supervised.log; exit 1; fi
	@grep -h "association accuracy" logs/synthetic/dotla.log | sed 's/^.*DOTLAAssociation/DOTLAAssociation/'; true
	$(SUMMARY)

# DOTLA alone, on both cores
demo-dotla: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS)
	$(PY) tools/train_net.py --config-file configs/Synthetic/dotla.yml
	$(SUMMARY)

demo-usl: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS)
	$(PY) tools/train_net.py --config-file configs/Synthetic/usl_baseline.yml

# The ceiling: supervised AGW with the demo set's own labels.
demo-supervised: $(STAMP) $(DEMO_META)
	$(PY) tools/train_net.py --config-file configs/Synthetic/agw_supervised.yml

# The floor: HOG and raw pixels of the grey images, no training (cross- and within-modality).
demo-handcrafted: $(STAMP) $(DEMO_META)
	$(PY) tools/handcrafted_baseline.py --root datasets/synthetic/demo --within-modality

# MULT + AMIRL + OCLR on the demo set, from the source-pretrained ResNet.
demo-mult: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS)
	$(PY) tools/train_net.py --config-file configs/Synthetic/mult.yml

# The CA multi-module framework (PA-CBAM, MAAL, VRA, VRNL, UM) on the demo set: a small 4-token conv-stem ViT
# pre-trained on the labelled source set (about 4.5 minutes, once), then 400 iterations (about 3 minutes).
# Its Table 3: tools/run_ablation.py --rows-file configs/Synthetic/ablations/ca_vit.yml --seeds 0 1 2 --jobs 2
demo-ca-vit: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS_VIT)
	$(PY) tools/train_net.py --config-file configs/Synthetic/ca_vit.yml

# Table 3 of DOTLA on the demo set: 7 rows x 3 seeds, two runs at a time (about 55 minutes on 2 CPU cores).
ablation: $(STAMP) $(DEMO_META) $(SOURCE_WEIGHTS) $(STAGE0_WEIGHTS)
	$(PY) tools/run_ablation.py --rows-file configs/Synthetic/ablations/dotla.yml --seeds 0 1 2 --jobs 2

# Our supervised AGW beside fast-reid's stock BoT, AGW and SBS (ResNet-50), same data and budget (README table).
bench-models: $(STAMP) $(DEMO_META)
	$(PY) tools/benchmark_models.py --data-root datasets/synthetic/demo --dataset SYSUMM01 --epochs 4 \
		--iters-per-epoch 50 --workers 1 --out logs/benchmark_models --configs configs/Synthetic/agw_supervised.yml \
		configs/Market1501/bagtricks_R50.yml configs/Market1501/AGW_R50.yml configs/Market1501/sbs_R50.yml

lint: $(STAMP)
	$(VENV)/bin/ruff check vireid_plugins tools tests

bench: $(STAMP)
	$(PY) tools/benchmark_eval.py
	$(PY) tools/benchmark_sinkhorn.py --pot-iters 50
	$(PY) tools/benchmark_pseudo_labels.py --scale sysu

clean:
	rm -rf logs datasets/synthetic

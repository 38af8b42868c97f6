# `make demo` and `make test` create .venv and install everything on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_DATA := datasets/synthetic/demo/SYSU-MM01

.PHONY: install test demo demo-usl demo-dotla lint bench clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,dev]"
	# fast-reid 1.4.0 pins torch 1.13: install it without its pins (its real needs are in setup.py)
	$(PY) -m pip install --quiet --no-deps fastreid==1.4.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

$(DEMO_DATA): | $(STAMP)
	$(PY) tools/make_synthetic_vireid.py --layout sysu --preset demo --seed 0 --workers 2 --out $(DEMO_DATA)

demo: $(STAMP) $(DEMO_DATA)
	$(PY) tools/train_net.py --config-file configs/Synthetic/agw_supervised.yml

demo-usl: $(STAMP) $(DEMO_DATA)
	$(PY) tools/train_net.py --config-file configs/Synthetic/usl_baseline.yml

demo-dotla: $(STAMP) $(DEMO_DATA)
	$(PY) tools/train_net.py --config-file configs/Synthetic/dotla.yml

lint: $(STAMP)
	$(VENV)/bin/ruff check vireid_plugins tools tests

bench: $(STAMP)
	$(PY) tools/benchmark_eval.py
	$(PY) tools/benchmark_sinkhorn.py --pot-iters 50
	$(PY) tools/benchmark_pseudo_labels.py --scale sysu

clean:
	rm -rf logs datasets/synthetic

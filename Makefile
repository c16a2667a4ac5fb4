# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test docs bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null && \
	    { [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/games/fortunes ]; }; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist fortunes >/dev/null; \
	fi
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[vision,data,text,rl,dev,docs,ray]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/hypernetworks demo

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -x -p no:cacheprovider
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/basedpyright  # pyrightconfig.json: basic mode over the files it lists
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d site

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	touch $(VENV)/.bench

bench: install $(VENV)/.bench
	$(PY) -m benchmarks.binding
	$(PY) -m benchmarks.lora_serving --backward --json results/lora_serving.json
	$(PY) -m benchmarks.continual_regularizer
	$(PY) -m benchmarks.hypermixer_scaling
	$(PY) -m benchmarks.peers
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.ghn_predict
	$(PY) -m benchmarks.hyperclip_cost

clean:
	rm -rf $(VENV)

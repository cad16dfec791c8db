# Two entry points, each doing all of its own set-up:
#   make demo  -- create .venv, install edgecond, run the main job on the embedded digits data
#   make test  -- create .venv, install edgecond with its test extras, run the fast test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo test test-slow wheels venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml export/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision pinned to the builds this project is tested with (CPU works; CUDA wheels too)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# the toolkit with its device runtime (./export's package ships inside it) and the test extras
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(BIN) $(DEMO_DIR)

test: $(STAMP)
	HOME=$${HOME:-/tmp} $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# the two distributions: dist/edgecond-*.whl (toolkit + device runtime), dist/edgecond_device-*.whl (device alone)
wheels: $(STAMP)
	$(BIN)/python -m build --wheel --outdir dist .
	$(BIN)/python -m build --wheel --outdir dist export

clean:
	rm -rf $(VENV) runs

# make demo: install what is missing, then generate -> pretrain (CPU, minutes) -> evaluate on Fashion-MNIST -> report
# make test: install what is missing, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synthsight-installed

.PHONY: demo test install data bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,export,stats,tensorboard]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import synthsight, torch, timm, safetensors, sklearn" && touch $(STAMP)

install: $(STAMP)

data:
	@scripts/ensure_fashion_mnist.sh

demo: install data
	$(BIN)/synthsight demo

test: install
	@scripts/ensure_fashion_mnist.sh --optional
	$(BIN)/python -m pytest -q

bench: install data
	$(BIN)/python benchmarks/generators.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# make demo: install what is missing, then generate -> pretrain (CPU, minutes) -> evaluate on Fashion-MNIST -> report
# make test: install what is missing, then run the test suite
# make data: Fashion-MNIST (Debian package) and the photograph dev set (built offline from photographs inside
#            scikit-image and scikit-learn, ~5 s; scripts/build_photo_patches.py)
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

data: install
	@scripts/ensure_fashion_mnist.sh
	@$(BIN)/python scripts/build_photo_patches.py --if-missing

demo: install data
	$(BIN)/synthsight demo

test: install
	@scripts/ensure_fashion_mnist.sh --optional
	@$(BIN)/python scripts/build_photo_patches.py --if-missing || echo "warning: photograph dev set not built; tests that need it are skipped" >&2
	$(BIN)/python -m pytest -q

bench: install data
	$(BIN)/python benchmarks/generators.py

clean:
	rm -rf $(VENV) runs .pytest_cache

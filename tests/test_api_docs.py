"""Every Python example of docs/API.md runs as written (top to bottom, one namespace)."""

import re
from pathlib import Path

import pytest

from synthsight.eval.data import FASHION_MNIST_DIR, FASHION_MNIST_ENV

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_api_doc_has_examples_for_each_promise():
    text = DOC.read_text()
    for promise in ("create_generator", "SyntheticStream", "load_backbone", "knn_eval", "synthsight.plugins"):
        assert promise in text
    assert len(_blocks()) >= 3


def test_the_examples_run(tmp_path, monkeypatch):
    import os

    fmnist = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    if not (fmnist / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks():
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102  (our own documentation)
    assert (tmp_path / "runs" / "api-example" / "provenance.json").is_file()

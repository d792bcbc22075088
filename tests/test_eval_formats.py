"""CIFAR-10/100 python batches and STL-10 binaries, written tiny in the test: layout, splits, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from synthsight.eval.cifar import CIFAR10_CLASSES
from synthsight.eval.data import DatasetError, DatasetNotFoundError, load_dataset
from synthsight.eval.stl10 import STL10_CLASSES


def _cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 3072 bytes whose red plane is 10 * label and whose green plane has a gradient along x."""
    labels = np.arange(n) % 10
    x = np.zeros((n, 3, 32, 32), np.uint8)
    x[:, 0] = (10 * labels)[:, None, None]
    x[:, 1] = np.arange(32, dtype=np.uint8)[None, None, :] * 4
    x[:, 2] = np.random.default_rng(seed).integers(0, 256, (n, 32, 32), dtype=np.uint8)
    return x.reshape(n, 3072), labels


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


@pytest.fixture
def cifar10(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        x, y = _cifar_images(20, i)
        _dump(root / f"data_batch_{i}", {b"data": x, b"labels": y.tolist(), b"batch_label": b"training batch"})
    x, y = _cifar_images(30, 0)
    _dump(root / "test_batch", {b"data": x, b"labels": y.tolist()}, protocol=5)  # newer pickles load too
    _dump(root / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    return root


def test_cifar10_layout_splits_and_names(cifar10: Path) -> None:
    train = load_dataset(f"cifar10:{cifar10}", "train", size=32)
    test = load_dataset(f"cifar10:{cifar10}", "test", size=16)
    assert train.images.shape == (100, 3, 32, 32) and test.images.shape == (30, 3, 16, 16)
    assert train.classes == list(CIFAR10_CLASSES) and train.labels[:3].tolist() == [0, 1, 2]
    assert (train.images[:, 0] == (10 * train.labels)[:, None, None]).all()  # red plane first
    assert train.images[0, 1, 5].tolist() == [4 * i for i in range(32)]  # rows of 32: x varies fastest
    assert "cifar10:test" in test.source
    auto = load_dataset(str(cifar10.parent), "test", size=16)  # the parent folder, auto-detected
    assert torch.equal(auto.images, test.images) and torch.equal(auto.labels, test.labels)
    sub = load_dataset(str(cifar10), "train", size=8, limit=20, seed=1)
    assert torch.bincount(sub.labels).tolist() == [2] * 10  # stratified


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    x, _ = _cifar_images(200, 0)
    fine = np.arange(200) % 100
    _dump(root / "train", {b"data": x, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()})
    _dump(root / "test", {b"data": x[:100], b"fine_labels": fine[:100].tolist()})
    _dump(root / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    data = load_dataset(f"cifar100:{root}", "train", size=8)
    assert len(data) == 200 and data.labels.max() == 99 and data.classes[7] == "c7"
    assert len(load_dataset(str(tmp_path), "test", size=8)) == 100  # parent folder: detected as CIFAR-100


class _RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


def test_cifar_errors_name_the_file_and_the_fix(cifar10: Path) -> None:
    (cifar10 / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3") as info:
        load_dataset(f"cifar10:{cifar10}", "train")
    assert "cs.toronto.edu" in str(info.value)
    (cifar10 / "test_batch").write_bytes((cifar10 / "data_batch_1").read_bytes()[:2000])  # truncated
    with pytest.raises(DatasetError, match="test_batch.*re-download"):
        load_dataset(f"cifar10:{cifar10}", "test")
    (cifar10 / "test_batch").write_bytes(pickle.dumps({b"data": Path("x")}))  # a global that is not an array
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset(f"cifar10:{cifar10}", "test")
    (cifar10 / "test_batch").write_bytes(pickle.dumps(_RunsCode()))  # a pickle that would run a command
    with pytest.raises(DatasetError, match="refusing to load posix.system|refusing to load os.system"):
        load_dataset(f"cifar10:{cifar10}", "test")
    assert not (cifar10 / "pwned").exists()
    _dump(cifar10 / "test_batch", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DatasetError, match=r"uint8 array \[N, 3072\]"):
        load_dataset(f"cifar10:{cifar10}", "test")
    with pytest.raises(DatasetError, match="needs its folder"):
        load_dataset("cifar10", "test")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(f"cifar100:{cifar10}/nope", "test")


def _stl10(root: Path, split: str, n: int) -> np.ndarray:
    """Images [n, 3, 96, 96] (row-major view) written column-major, labels 1..10."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
    images[:, 0, 0, :] = 255  # top row of red is bright: tells rows from columns
    images[:, 0, 1:, :] = 0
    images.transpose(0, 1, 3, 2).tofile(root / f"{split}_X.bin")  # column-major on disk
    (np.arange(n) % 10 + 1).astype(np.uint8).tofile(root / f"{split}_y.bin")
    return images


def test_stl10_column_major_labels_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "stl10_binary"
    images = _stl10(root, "train", 20)
    _stl10(root, "test", 10)
    train = load_dataset(f"stl10:{tmp_path}", "train", size=96)
    assert torch.equal(train.images, torch.from_numpy(images)) and train.classes == list(STL10_CLASSES)
    assert train.labels.tolist()[:11] == [*range(10), 0]  # 1..10 on disk -> 0..9
    test = load_dataset(str(root), "test", size=32, limit=5)  # auto-detected, stratified subset
    assert test.images.shape == (5, 3, 32, 32) and len(set(test.labels.tolist())) == 5
    (root / "test_X.bin").write_bytes((root / "test_X.bin").read_bytes()[:-7])
    with pytest.raises(DatasetError, match="test_X.bin.*truncated"):
        load_dataset(f"stl10:{root}", "test")
    (root / "train_y.bin").unlink()
    with pytest.raises(DatasetNotFoundError, match="train_y.bin") as info:
        load_dataset(f"stl10:{root}", "train")
    assert "stanford.edu" in str(info.value)

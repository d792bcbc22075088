"""CIFAR-10 and CIFAR-100 from the "python version" archives (Krizhevsky 2009), read without torchvision.

Point the loader at the extracted folder: cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) or
cifar-100-python/ (train, test, meta); a parent folder holding one of them works too. Each file is a pickled dict
with b"data" (uint8 [N, 3072]: 1024 red, 1024 green, 1024 blue values, rows of 32) and b"labels" (CIFAR-10) or
b"fine_labels" (CIFAR-100, 100 classes). Pickle can run code, so the files are read with an unpickler that only
rebuilds numpy arrays, lists, dicts and strings, and refuses anything else: a tampered file fails with an error
instead of running. (They are the user's own local files; this keeps a wrong file from doing harm.)

Example:
    >>> train = load_cifar("~/data/cifar-10-batches-py", "cifar10", "train", size=32)   # 50000 images
    >>> test = load_dataset("cifar100:~/data/cifar-100-python", "test", limit=1000)       # 10 per class
    >>> train.classes[:3]                                                                  # ['airplane', ...]
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from synthsight.eval.data import DatasetError, DatasetNotFoundError, LabeledImages, resize_images, stratified_subset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_LAYOUT = {  # name -> (folder name, train files, test files, label key, meta file, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels",
                "batches.meta", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}
_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_ALLOWED = {  # the only globals a CIFAR pickle needs (numpy arrays); numpy 1 and 2 module names alike
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2; only latin-1 is allowed below
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR file holds only arrays and lists")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(1))[0]
        if name == "scalar":
            return np.float64(0).__reduce__()[0]
        if name == "_frombuffer":
            return np.zeros(1).__reduce_ex__(5)[0]
        if name == "encode":
            return _latin1_encode
        return getattr(np, name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing to decode bytes as {encoding!r} in a CIFAR file")
    return text.encode("latin1")


def detect_cifar(root: Path) -> tuple[str, Path] | None:
    """("cifar10" | "cifar100", folder) if `root` (or its standard sub-folder) holds CIFAR files, else None."""
    for name, (folder, train, test, *_) in _LAYOUT.items():
        for candidate in (root, root / folder):
            if (candidate / test[0]).is_file() and (candidate / train[0]).is_file():
                return name, candidate
    return None


def load_cifar(root: Path | str, name: str, split: str = "train", size: int = 32, limit: int | None = None,
               seed: int = 0) -> LabeledImages:
    """CIFAR-`name` ("cifar10" or "cifar100") `split` ("train" or "test") from `root`, as LabeledImages."""
    if name not in _LAYOUT:
        raise DatasetError(f"unknown CIFAR variant {name!r}; use cifar10 or cifar100")
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r} for {name}; use 'train' or 'test'")
    folder, train_files, test_files, label_key, meta_file, names_key = _LAYOUT[name]
    root = Path(root).expanduser()
    if not (root / test_files[0]).is_file() and (root / folder).is_dir():
        root = root / folder
    images, labels = [], []
    for file in train_files if split == "train" else test_files:
        batch = _read_pickle(root / file, name)
        x, y = batch.get(b"data"), batch.get(label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise DatasetError(f"{root / file}: b'data' must be a uint8 array [N, 3072], got {got}; "
                               f"re-download the python version from {_URL}")
        if y is None or len(y) != len(x):
            raise DatasetError(f"{root / file}: {label_key!r} must hold one label per image ({len(x)}), got "
                               f"{'none' if y is None else len(y)}; is this {name}? re-download from {_URL}")
        images.append(x)
        labels.append(np.asarray(y, dtype=np.int64))
    y = torch.from_numpy(np.concatenate(labels))
    classes = _class_names(root / meta_file, names_key, name)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
        raise DatasetError(f"{name} labels in {root} lie outside 0..{len(classes) - 1}; is this {name}?")
    keep = stratified_subset(y, limit, seed) if limit else torch.arange(len(y))
    pixels = torch.from_numpy(np.concatenate(images)[keep.numpy()].reshape(-1, 3, 32, 32))
    return LabeledImages(resize_images(pixels, size), y[keep], classes, f"{name}:{split} ({root})")


def _read_pickle(path: Path, name: str) -> dict:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{name} file {path.name} not found in {path.parent}. Download the CIFAR python version from {_URL}, "
            f"extract it (tar xzf) and pass the {_LAYOUT[name][0]} folder, e.g. --data {name}:/data/{_LAYOUT[name][0]}"
        )
    try:
        data = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as exc:  # what a truncated or foreign file raises
        raise DatasetError(f"cannot read {path} as a CIFAR python batch ({type(exc).__name__}: {exc}); the file is "
                           f"truncated or not from the python version: re-download and extract it from {_URL}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a {type(data).__name__}, not a CIFAR batch dict; re-download from {_URL}")
    return data


def _class_names(meta: Path, key: bytes, name: str) -> list[str]:
    """Names from the meta file when present and readable, else CIFAR-10's known names or indices."""
    default = list(CIFAR10_CLASSES) if name == "cifar10" else [str(i) for i in range(100)]
    if not meta.is_file():
        return default
    names = _read_pickle(meta, name).get(key)
    if not isinstance(names, list) or len(names) != len(default):
        return default
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]

"""STL-10 from its binary release (Coates et al. 2011): 96x96 colour images, 10 classes, 5000 train / 8000 test.

Point the loader at the extracted stl10_binary/ folder (or its parent): train_X.bin / train_y.bin and
test_X.bin / test_y.bin. Images are stored as raw uint8, each one 3 x 96 x 96 in column-major order (channel,
then column, then row); labels are uint8 1..10. The 100000 unlabelled images (unlabeled_X.bin) are not used.
Files are memory-mapped, so a subset (`limit`) reads only its own images.

Example:
    >>> train = load_stl10("~/data/stl10_binary", "train", size=64)    # 5000 images
    >>> test = load_dataset("stl10:~/data/stl10_binary", "test", size=32, limit=800)
    >>> train.classes[0]                                                  # 'airplane'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthsight.eval.data import DatasetError, DatasetNotFoundError, LabeledImages, resize_images, stratified_subset

STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_SIDE = 96
_URL = "https://cs.stanford.edu/~acoates/stl10/"


def detect_stl10(root: Path) -> Path | None:
    """The folder holding STL-10's binaries (`root` or root/stl10_binary), or None."""
    for candidate in (root, root / "stl10_binary"):
        if (candidate / "test_X.bin").is_file() and (candidate / "test_y.bin").is_file():
            return candidate
    return None


def load_stl10(root: Path | str, split: str = "train", size: int = 96, limit: int | None = None,
               seed: int = 0) -> LabeledImages:
    """STL-10 `split` ("train" or "test") from `root`, as LabeledImages resized to `size`."""
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r} for stl10; use 'train' (5000 images) or 'test' (8000)")
    root = Path(root).expanduser()
    root = detect_stl10(root) or (root / "stl10_binary" if (root / "stl10_binary").is_dir() else root)
    x_path, y_path = root / f"{split}_X.bin", root / f"{split}_y.bin"
    for path in (x_path, y_path):
        if not path.is_file():
            raise DatasetNotFoundError(
                f"STL-10 file {path.name} not found in {root}. Download the binary release (stl10_binary.tar.gz) "
                f"from {_URL}, extract it and pass the stl10_binary folder, e.g. --data stl10:/data/stl10_binary"
            )
    raw_y = np.fromfile(y_path, dtype=np.uint8)
    per_image = 3 * _SIDE * _SIDE
    n = x_path.stat().st_size // per_image
    if x_path.stat().st_size != n * per_image or n != len(raw_y):
        raise DatasetError(
            f"{x_path} holds {x_path.stat().st_size} bytes ({x_path.stat().st_size / per_image:g} images of "
            f"3x96x96) but {y_path} has {len(raw_y)} labels; the download is truncated: re-download from {_URL}"
        )
    if n and (raw_y.min() < 1 or raw_y.max() > len(STL10_CLASSES)):
        raise DatasetError(f"{y_path}: labels must lie in 1..10, found {raw_y.min()}..{raw_y.max()}; re-download it")
    y = torch.from_numpy(raw_y.astype(np.int64) - 1)
    keep = stratified_subset(y, limit, seed) if limit else torch.arange(len(y))
    data = np.memmap(x_path, dtype=np.uint8, mode="r", shape=(n, 3, _SIDE, _SIDE))
    pixels = torch.from_numpy(np.ascontiguousarray(data[keep.numpy()].transpose(0, 1, 3, 2)))  # column-major
    return LabeledImages(resize_images(pixels, size), y[keep], _class_names(root), f"stl10:{split} ({root})")


def _class_names(root: Path) -> list[str]:
    path = root / "class_names.txt"
    if path.is_file():
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == len(STL10_CLASSES):
            return names
    return list(STL10_CLASSES)

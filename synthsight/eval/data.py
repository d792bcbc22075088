"""Real labelled images for evaluation: Fashion-MNIST, CIFAR-10/100, STL-10, any ImageFolder, or an .npz.

Spec strings: "fashion-mnist" (Debian package files), "photos" (photographs from installed packages, photos.py),
"cifar10:DIR", "cifar100:DIR" (the python-version folders, see cifar.py), "stl10:DIR" (the binary folder, see
stl10.py), or a bare path: a directory is recognised as CIFAR-10, CIFAR-100 or STL-10 by its files, otherwise read
as an ImageFolder (image_folder.py: read image by image); a file must be an .npz.

Every source comes out the same way: uint8 Tensor[N, 3, S, S] (grey replicated to three channels, resized to
S x S with antialiased bilinear interpolation, aspect ratio not kept) and int64 labels.

Example:
    >>> train = load_dataset("fashion-mnist", "train", size=32)          # 60000 images
    >>> test = load_dataset("fashion-mnist:test", size=32, limit=1000)    # stratified: 100 per class
    >>> cifar = load_dataset("cifar10:~/data/cifar-10-batches-py", "test")   # or just the path: auto-detected
"""

from __future__ import annotations

import gzip
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synthsight.registry import unknown_name_message

FASHION_MNIST_ENV = "SYNTHSIGHT_FASHION_MNIST_DIR"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}  # split -> file prefix
NAMED_DATASETS = ("fashion-mnist",)
PATH_DATASETS = ("cifar10", "cifar100", "stl10")  # "<name>:<folder>"; a bare folder is recognised by its files


class DatasetError(ValueError):
    """A data set that cannot be loaded; the message names the problem and how to fix it."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The files of a data set are not where they were looked for."""


@dataclass
class LabeledImages:
    """A labelled image set ready for feature extraction."""

    images: torch.Tensor  # uint8 Tensor[N, 3, S, S]
    labels: torch.Tensor  # int64 Tensor[N], values in 0 .. len(classes) - 1
    classes: list[str]  # class names, indexed by label
    source: str  # where the images came from, e.g. "fashion-mnist:test (/usr/share/datasets/fashion-mnist)"
    n_skipped: int = 0  # unreadable files skipped with skip_bad=True (ImageFolder only)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            got = f"{self.images.dtype} {tuple(self.images.shape)}"
            raise ValueError(f"images must be uint8 Tensor[N, 3, S, S], got {got}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            got = f"{self.labels.dtype} {tuple(self.labels.shape)}"
            raise ValueError(f"labels must be int64 Tensor[{len(self.images)}] (one per image), got {got}")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name)")

    def __len__(self) -> int:
        return len(self.labels)


def load_dataset(
    spec: str,
    split: str = "train",
    size: int = 32,
    limit: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> LabeledImages:
    """Load `spec`: "fashion-mnist" (or "fashion-mnist:train" / ":test", which overrides `split`), "photos"
    (the photograph dev set of photos.py: "photos", "photos:test" or "photos:PATH"), "cifar10:DIR" /
    "cifar100:DIR" / "stl10:DIR" (their `split`), a directory (CIFAR or STL-10 files are recognised, else it is
    read as <root>/<class>/<image>, split ignored), or an .npz with `images` and `labels` (split ignored).

    `limit` keeps a seeded, stratified subset of that many images (classes in proportion to their size).
    `skip_bad` skips unreadable files in an ImageFolder (counted in `n_skipped`) instead of raising.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    name, _, forced_split = spec.partition(":")
    if name.lower() == "photos":  # the photograph dev set built by scripts/build_photo_patches.py (photos.py)
        from synthsight.eval.photos import load_photos

        return load_photos(spec, split, size, limit, seed)
    if name.lower() in NAMED_DATASETS:
        return _load_fashion_mnist(forced_split or split, size, limit, seed)
    if name.lower() in PATH_DATASETS:
        return _load_path_dataset(name.lower(), forced_split, split, size, limit, seed)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_directory(path, split, size, limit, seed, skip_bad)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"{path} is a file but not an .npz; pass an .npz or a directory <root>/<class>/<image>")
        return _load_npz(path, size, limit, seed)
    if os.sep in spec or "/" in spec or spec.startswith((".", "~")) or spec.lower().endswith(".npz"):
        raise DatasetNotFoundError(
            f"no such file or directory: {path}; check the path (relative paths start at {Path.cwd()})"
        )
    raise DatasetError(
        unknown_name_message("dataset", spec,
                             [*NAMED_DATASETS, "photos", *(f"{n}:DIR" for n in PATH_DATASETS)])
        + f", or a path to an ImageFolder directory or .npz file (no file or directory {spec!r} exists)"
    )


def _load_path_dataset(name: str, folder: str, split: str, size: int, limit: int | None, seed: int) -> LabeledImages:
    """cifar10 / cifar100 / stl10 from `folder` (the part of the spec after "name:")."""
    from synthsight.eval.cifar import load_cifar
    from synthsight.eval.stl10 import load_stl10

    if not folder:
        raise DatasetError(f"{name} needs its folder: {name}:/path/to/folder (see `synthsight eval --help`)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name} folder {root} does not exist; check the path after '{name}:'")
    if name == "stl10":
        return load_stl10(root, split, size, limit, seed)
    return load_cifar(root, name, split, size, limit, seed)


def _load_directory(root: Path, split: str, size: int, limit: int | None, seed: int, skip_bad: bool) -> LabeledImages:
    """A CIFAR or STL-10 folder recognised by its files, else an ImageFolder (image_folder.py)."""
    from synthsight.eval.cifar import detect_cifar, load_cifar
    from synthsight.eval.image_folder import load_image_folder
    from synthsight.eval.stl10 import detect_stl10, load_stl10

    cifar = detect_cifar(root)
    if cifar is not None:
        return load_cifar(cifar[1], cifar[0], split, size, limit, seed)
    stl = detect_stl10(root)
    if stl is not None:
        return load_stl10(stl, split, size, limit, seed)
    return load_image_folder(root, size, limit, seed, skip_bad)


def image_folder_root(spec: str) -> Path | None:
    """The folder `load_dataset(spec)` reads as an ImageFolder (a directory that no other reader recognises), else
    None: lets a caller stream it image by image (image_folder.ImageFolder) instead of loading it whole."""
    from synthsight.eval.cifar import detect_cifar
    from synthsight.eval.stl10 import detect_stl10

    name = spec.partition(":")[0].lower()
    if name in ("photos", *NAMED_DATASETS, *PATH_DATASETS):
        return None
    path = Path(spec).expanduser()
    if not path.is_dir() or detect_cifar(path) is not None or detect_stl10(path) is not None:
        return None
    return path


def align_classes(reference: LabeledImages, data: LabeledImages) -> LabeledImages:
    """`data` with its labels re-indexed to `reference`'s class names when each of its class names is one of them
    (a test split that lacks some classes of the training split keeps the training split's indices); otherwise
    `data` as it is."""
    if data.classes == reference.classes:
        return data
    index = {name: i for i, name in enumerate(reference.classes)}
    if len(set(data.classes)) != len(data.classes) or not all(name in index for name in data.classes):
        return data
    mapping = torch.tensor([index[name] for name in data.classes], dtype=torch.int64)
    labels = mapping[data.labels] if len(data.labels) else data.labels
    return LabeledImages(data.images, labels, list(reference.classes), data.source, data.n_skipped)


def stratified_subset(labels: torch.Tensor, limit: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of `limit` items, each class represented in proportion to its size, seeded.

    Items are ordered by their rank within their class divided by the class size (after a seeded shuffle),
    so any prefix is as balanced as it can be: 10 equal classes and limit=100 give exactly 10 per class.
    """
    if limit >= len(labels):
        return torch.arange(len(labels))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    key = torch.empty(len(labels), dtype=torch.float64)
    for c in torch.unique(shuffled):
        mask = shuffled == c
        count = int(mask.sum())
        key[mask] = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    order = torch.argsort(key, stable=True)
    return perm[order[:limit]].sort().values


def resize_images(images: torch.Tensor, size: int, batch_size: int = 4096) -> torch.Tensor:
    """uint8 Tensor[N, C, H, W] (C = 1 or 3) -> uint8 Tensor[N, 3, size, size], antialiased bilinear, batched."""
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size]
        if (h, w) != (size, size):
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + len(x)] = x  # one grey channel broadcasts to three
    return out


# --- Fashion-MNIST ------------------------------------------------------------------------------------------------


def _load_fashion_mnist(split: str, size: int, limit: int | None, seed: int) -> LabeledImages:
    if split not in _FASHION_MNIST_FILES:
        raise DatasetError(f"unknown split {split!r} for fashion-mnist; use 'train' (60000 images) or 'test' (10000)")
    root = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    prefix = _FASHION_MNIST_FILES[split]
    images = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"), magic=2051, ndim=3)
    labels = torch.from_numpy(_read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"), magic=2049, ndim=1).copy())
    if len(labels) != len(images):
        raise DatasetError(f"Fashion-MNIST {split} in {root}: {len(images)} images, {len(labels)} labels; reinstall it")
    labels = labels.long()
    keep = stratified_subset(labels, limit, seed) if limit else torch.arange(len(labels))
    pixels = torch.from_numpy(images[keep.numpy()]).unsqueeze(1)  # fancy indexing copies: writable
    source = f"fashion-mnist:{split} ({root})"
    return LabeledImages(resize_images(pixels, size), labels[keep], list(FASHION_MNIST_CLASSES), source)


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):  # torchvision's raw/ folder holds both forms
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}.gz not found in {root}. Install the data set with "
        f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; it installs to {FASHION_MNIST_DIR}), "
        f"or set {FASHION_MNIST_ENV} to a directory holding "
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    )


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An IDX file (big-endian int32 magic and dims, then uint8 data), optionally gzipped, as a uint8 array."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(
            f"cannot read {path} ({exc}); reinstall with `sudo apt-get install --reinstall dataset-fashion-mnist`"
        ) from exc
    offset = 4 + 4 * ndim  # 16 for images, 8 for labels
    header = np.frombuffer(data[:offset], dtype=">i4") if len(data) >= offset else np.array([])
    dims = tuple(int(d) for d in header[1:])
    if len(header) != 1 + ndim or header[0] != magic or len(data) != offset + int(np.prod(dims)):
        raise DatasetError(f"{path} is not a valid IDX file (bad header or truncated); reinstall the data set")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


# --- .npz ---------------------------------------------------------------------------------------------------------


def _load_npz(path: Path, size: int, limit: int | None, seed: int) -> LabeledImages:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read {path} as an .npz archive ({exc}); write it with np.savez") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetError(
            f"{path} holds a single .npy array, not an .npz archive; save with np.savez(path, images=..., labels=...)"
        )
    with npz:
        missing = [k for k in ("images", "labels") if k not in npz.files]
        if missing:
            raise DatasetError(
                f"{path} lacks the array(s) {missing} (it holds {npz.files}); save it with "
                "np.savez(path, images=..., labels=...)"
            )
        try:
            images, raw_labels = npz["images"], npz["labels"]
            names = [str(c) for c in npz["classes"]] if "classes" in npz.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"cannot read the arrays of {path} ({exc}); write it with np.savez") from exc
    labels, classes = _npz_labels(path, raw_labels, len(images), names)
    keep = stratified_subset(labels, limit, seed) if limit else torch.arange(len(labels))
    pixels = _npz_pixels(path, _as_nchw(path, images)[keep.numpy()])
    return LabeledImages(resize_images(pixels, size), labels[keep], classes, str(path))


def _npz_labels(path: Path, y: np.ndarray, n: int, names: list[str] | None) -> tuple[torch.Tensor, list[str]]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{path}: labels must be a 1-D array of class indices, got shape {y.shape}")
    if len(y) != n:
        raise DatasetError(f"{path}: images has {n} entries but labels has {len(y)}; they must match one to one")
    if y.dtype.kind in "US":  # class names as labels
        names, y = np.unique(y, return_inverse=True)
        return torch.from_numpy(y.astype(np.int64)), [str(c) for c in names]
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise DatasetError(f"{path}: labels must be integer class indices (or class names), got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and int(y.min()) < 0:
        raise DatasetError(f"{path}: labels must be >= 0, found {int(y.min())}")
    if names is not None:  # labels index the given class names
        n_classes = int(y.max()) + 1 if n else 0
        if len(names) < n_classes:
            raise DatasetError(f"{path}: 'classes' names {len(names)} classes but labels go up to {n_classes - 1}")
        return torch.from_numpy(y), names
    # Without names, the distinct values are the classes, in ascending order, each named by its value: labels 0..K-1
    # stay as they are, and one stray value (1e9) makes one more class, not a billion (never more than the images).
    values, y = np.unique(y, return_inverse=True)
    return torch.from_numpy(y.reshape(-1).astype(np.int64)), [str(v) for v in values.tolist()]


def _as_nchw(path: Path, x: np.ndarray) -> np.ndarray:
    """N,H,W / N,H,W,C / N,C,H,W (C in 1..4) -> N,C,H,W view with C = 1 or 3 (alpha dropped)."""
    if x.ndim == 3:
        return x[:, None]
    channel_counts = (1, 2, 3, 4)
    if x.ndim == 4 and x.shape[-1] in channel_counts and x.shape[1] not in channel_counts:
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 or x.shape[1] not in channel_counts:
        raise DatasetError(f"{path}: images must have shape (N,H,W), (N,H,W,C) or (N,C,H,W) with C<=4, got {x.shape}")
    return x[:, :1] if x.shape[1] <= 2 else x[:, :3]  # grey(+alpha) -> grey, RGB(A) -> RGB


def _npz_pixels(path: Path, x: np.ndarray) -> torch.Tensor:
    """uint8, integer 0..255 or float [0, 1] pixels -> uint8 Tensor of the same shape."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype.kind not in "iuf" or x.size == 0:
        raise DatasetError(f"{path}: images must be uint8 or float in [0, 1], got dtype {x.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype.kind == "f":
        if not torch.isfinite(t).all():
            raise DatasetError(f"{path}: float images contain NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise DatasetError(
                f"{path}: float images must lie in [0, 1], found [{lo:g}, {hi:g}]; divide them by 255 or save uint8"
            )
        return t.float().mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi > 255:
        raise DatasetError(f"{path}: integer images must lie in 0..255, found {lo}..{hi}")
    return t.to(torch.uint8)

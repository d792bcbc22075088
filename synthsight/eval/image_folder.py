"""A folder of images, one sub-folder per class (<root>/<class>/<image>), read image by image.

`ImageFolder` lists the files when it is built and decodes one only when it is asked for it (a torch Dataset:
`folder[i]` opens file i), so a folder of any size can feed a training run (the real-image stream, data.real=DIR)
or a DataLoader of the user's own. Files that are not images (a generated data set's manifest.json, notes) and
hidden files and folders are ignored. `load_image_folder` reads a folder for evaluation, decoding one file at a time
straight into one uint8 array at the evaluation size.

Example:
    >>> folder = ImageFolder(Path("~/photos").expanduser(), size=64)   # lists the files, decodes none
    >>> image, label = folder[0]                                        # uint8 Tensor[3, 64, 64], int
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from synthsight.eval.data import DatasetError, LabeledImages, resize_images, stratified_subset

_SPLIT_DIR_NAMES = {"train", "test", "val", "valid", "validation"}
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # what PIL raises for a bad file
_FIX = "remove or replace the file"
_EVAL_FIX = f"{_FIX}, or skip unreadable files with skip_bad=True (`synthsight eval --skip-bad`)"


def image_suffixes() -> frozenset[str]:
    """File name endings PIL can open ('.png', '.jpg', ...); other files (manifest.json, notes) are not images."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


class ImageFolder(Dataset):
    """<root>/<class>/<image> as (uint8 Tensor[3, size, size], label) items, each decoded when it is read.

    `files`, `labels` and `classes` (sorted sub-folder names, indexed by label) are known from the start; an
    unreadable file raises a DatasetError naming it when it is reached. `fix` ends that message (how to repair it).
    """

    def __init__(self, root: Path, size: int, fix: str = _FIX) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.root, self.size, self.fix = Path(root), size, fix
        self.files, self.labels, self.classes = scan_image_folder(self.root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.image(index), self.labels[index]

    def image(self, index: int) -> torch.Tensor:
        """Image `index` decoded, converted to RGB and resized: uint8 Tensor[3, size, size]."""
        path = self.files[index]
        try:
            return decode_image(path, self.size)[0]
        except UNREADABLE as exc:
            raise DatasetError(f"cannot read image {path} ({type(exc).__name__}: {exc}); {self.fix}") from exc


def load_image_folder(root: Path, size: int, limit: int | None, seed: int, skip_bad: bool) -> LabeledImages:
    """The folder for evaluation (`limit`: a seeded stratified subset); `skip_bad` skips unreadable files (counted
    in n_skipped, with a warning) instead of raising."""
    folder = ImageFolder(root, size, fix=_EVAL_FIX)
    keep = stratified_subset(torch.tensor(folder.labels), limit, seed).tolist() if limit else range(len(folder))
    # decoded one file at a time straight into one uint8 array at the evaluation size: memory is that array only
    images = torch.empty(len(keep), 3, size, size, dtype=torch.uint8)
    kept_labels, bad = [], []
    for i in keep:
        try:
            images[len(kept_labels)] = folder.image(i)
            kept_labels.append(folder.labels[i])
        except DatasetError:
            if not skip_bad:
                raise
            bad.append(str(folder.files[i]))
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        warnings.warn(f"skipped {len(bad)} unreadable files in {root}: {shown}", stacklevel=3)
    if not kept_labels:
        raise DatasetError(f"no readable images in {root} ({len(bad)} unreadable files skipped)")
    return LabeledImages(images[: len(kept_labels)], torch.tensor(kept_labels, dtype=torch.long), folder.classes,
                         str(root), len(bad))


def scan_image_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under <root>/<class>/ (recursively; hidden files and folders and files that are not images, such
    as a generated data set's manifest.json, ignored), their labels, class names."""
    suffixes = image_suffixes()
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DatasetError(f"directory {root} is empty; expected one sub-directory per class: {root}/<class>/<image>")
    classes = sorted(p.name for p in entries if p.is_dir())
    if not classes:
        raise DatasetError(
            f"directory {root} has no class sub-directories (it holds {len(entries)} files); "
            f"expected one sub-directory per class: {root}/<class>/<image>"
        )
    if len(classes) > 1 and set(classes) <= _SPLIT_DIR_NAMES:
        raise DatasetError(
            f"{root} holds split directories {classes}, not classes; pass one of them, e.g. {root / classes[0]}"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(
            p for p in (root / name).rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )  # fmt: skip
        if not found:
            raise DatasetError(f"class directory {root / name} holds no images; remove it or add images")
        files += found
        labels += [label] * len(found)
    return files, labels, classes


def decode_image(path: Path, size: int) -> torch.Tensor:
    """One image file -> uint8 Tensor[1, 3, size, size]."""
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale still >= size (much faster for photos)
        rgb = np.asarray(im.convert("RGB"))
    return resize_images(torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0), size)

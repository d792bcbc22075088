"""Writing generated images to disk: preview grids and PNG data sets with a verifiable manifest.

A data set directory holds `{index:08d}.png` for each image and `manifest.json`:

    {"format": "synthsight-dataset/1", "generator": gen.config(), "seed": 0, "count": n, "complete": true,
     "hash": "sha256 of the uint8 RGB pixels, row-major HWC (not of the PNG bytes)",
     "images": [{"index": 0, "file": "00000000.png", "sha256": "..."}, ...]}

The hash is taken over the decoded pixels rather than the PNG bytes, so it does not depend on the zlib or Pillow
version that encoded the file, and anyone can re-check a file (or a regenerated image) with `pixel_sha256`.

Example:
    >>> gen = create_generator("dead_leaves", size=64)
    >>> save_grid(gen.generate(range(64), seed=0), "preview.png")
    >>> write_dataset(gen, n=1000, seed=0, out_dir="data/dl64", workers=2)
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from synthsight.generators.base import Generator

FORMAT = "synthsight-dataset/1"
HASH_NOTE = "sha256 of the uint8 RGB pixels, row-major HWC (not of the PNG bytes)"
MANIFEST = "manifest.json"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (any shape) to uint8 by round-to-nearest of x * 255, clamped; same device."""
    return images.detach().mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)


def pixel_sha256(pixels: np.ndarray | torch.Tensor) -> str:
    """SHA-256 of a uint8 image as [H, W, 3] (RGB, row-major); a [3, H, W] tensor is transposed first."""
    if isinstance(pixels, torch.Tensor):
        if pixels.dim() == 3 and pixels.shape[0] == 3:
            pixels = pixels.permute(1, 2, 0)
        pixels = pixels.cpu().numpy()
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected uint8 pixels [H, W, 3], got {pixels.dtype} {tuple(pixels.shape)}")
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, padding: int = 2) -> Path:
    """Write images Tensor[B, 3, H, W] in [0, 1] as one PNG grid (nrow per row, default ~sqrt(B)); returns path."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    b, _, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    ncol = math.ceil(b / nrow)
    grid = torch.ones(3, ncol * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8) * 255
    pixels = to_uint8(images.cpu())
    for k in range(b):
        r, c = divmod(k, nrow)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[:, y : y + h, x : x + w] = pixels[k]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return path


def _header(generator: Generator, n: int, seed: int, layout: str = "flat") -> dict[str, Any]:
    header = {"format": FORMAT, "generator": generator.config(), "seed": int(seed), "count": int(n), "hash": HASH_NOTE}
    return header if layout == "flat" else {**header, "layout": layout}


def _same_run(found: dict[str, Any], header: dict[str, Any]) -> bool:
    return all(found.get(k) == v for k, v in header.items())


def _check_directory(out_dir: Path, header: dict[str, Any]) -> None:
    """Refuse a non-empty directory unless it holds a manifest of this very run (same generator, seed, count)."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise ValueError(
            f"{out_dir} is not empty and has no {MANIFEST}: refusing to write a data set among other files. "
            f"Choose a new or empty directory."
        )
    try:
        found = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest} cannot be read ({err}); choose a new or empty directory.") from err
    if not _same_run(found, header):
        diff = {k: (found.get(k), v) for k, v in header.items() if found.get(k) != v}
        raise ValueError(
            f"{out_dir} already holds a different data set (differs in {sorted(diff)}: found "
            f"{ {k: d[0] for k, d in diff.items()} }, asked { {k: d[1] for k, d in diff.items()} }). "
            f"Write to a new directory, or delete {out_dir} first to replace it."
        )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def class_folder(label: int) -> str:
    """The sub-folder of class `label` in the 'classes' layout; zero-padded so folders sort in label order."""
    return f"class_{label:05d}"


def _write_batch(generator: Generator, indices: Sequence[int], seed: int, out_dir: str,
                 layout: str = "flat") -> list[dict[str, Any]]:
    """Render images `indices`, write each as PNG, return their manifest entries (runs in pool workers too)."""
    images, labels = generator.generate_with_labels(indices, seed)
    pixels = to_uint8(images).permute(0, 2, 3, 1).contiguous().numpy()
    entries = []
    for i, image, label in zip(indices, pixels, labels.tolist()):
        name = f"{i:08d}.png" if layout == "flat" else f"{class_folder(label)}/{i:08d}.png"
        if layout != "flat":
            os.makedirs(os.path.join(out_dir, class_folder(label)), exist_ok=True)
        Image.fromarray(image).save(os.path.join(out_dir, name), compress_level=1)
        entry = {"index": int(i), "file": name, "sha256": pixel_sha256(image)}
        entries.append(entry if label < 0 else {**entry, "label": int(label)})
    return entries


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core; intra-op threads would only oversubscribe


def write_dataset(
    generator: Generator,
    n: int,
    seed: int,
    out_dir: str | os.PathLike,
    batch_size: int = 256,
    workers: int = 1,
    progress: bool = True,
    layout: str = "flat",
) -> Path:
    """Write images 0..n-1 of stream `seed` as PNG files plus manifest.json; returns the manifest's path.

    Args:
        generator: any registered family (its config() goes into the manifest).
        n: number of images; seed: stream seed (image i is the same image whatever batch_size or workers).
        out_dir: created if missing. A non-empty directory is refused unless its manifest is of this same run
            (same generator config, seed and count), in which case the images are written again.
        batch_size: images rendered per task.
        workers: processes rendering and encoding in parallel (1: in this process).
        progress: show a tqdm bar.
        layout: "flat" (every PNG in out_dir; a family's class labels go into the manifest) or "classes" (one
            sub-folder per class, class_00000/..., so any ImageFolder reader can train on the labels).
    """
    if n < 0 or batch_size < 1 or workers < 1:
        raise ValueError(f"need n >= 0, batch_size >= 1 and workers >= 1, got {n}, {batch_size}, {workers}")
    if layout not in ("flat", "classes"):
        raise ValueError(f"layout must be 'flat' or 'classes', got {layout!r}")
    if layout == "classes" and not generator.num_classes:
        raise ValueError(f"{generator.family}/{generator.variant} has no categories, so there are no class folders to "
                         "write; use layout 'flat', or a family with categories (fractal_ifs, contours, programs)")
    out_dir = Path(out_dir)
    header = _header(generator, n, seed, layout)
    _check_directory(out_dir, header)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    _write_json(manifest, {**header, "complete": False})  # marks the directory as this run's, even if interrupted

    from tqdm.auto import tqdm

    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    entries: list[dict[str, Any]] = []
    with tqdm(total=n, unit="img", desc=f"{generator.family}/{generator.variant}", disable=not progress) as bar:
        if workers == 1 or len(batches) <= 1:
            for batch in batches:
                entries += _write_batch(generator, batch, seed, str(out_dir), layout)
                bar.update(len(batch))
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold OpenMP threads
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                futures = [pool.submit(_write_batch, generator, b, seed, str(out_dir), layout) for b in batches]
                for future, batch in zip(futures, batches):
                    entries += future.result()
                    bar.update(len(batch))
    _write_json(manifest, {**header, "complete": True, "images": entries})
    return manifest

"""A labelled colour-photograph dev set built offline from freely licensed photographs inside installed packages.

Fourteen photographs ship inside scikit-image (skimage.data, the files bundled in the wheel, never the ones it
fetches with pooch) and scikit-learn (sklearn.datasets.load_sample_images); each is one class. Patches are
square windows of log-uniform side 32..96 px (after the photograph is scaled so its shorter side is at most 512 px),
resized to 64 px. Each photograph is cut into a grid of ~128 px tiles; a seeded quarter of the tiles gives the test
patches and the rest the training patches, and every window lies inside one tile, so train and test patches never
share a pixel. The recipe is deterministic: same photographs and seed, same arrays (each source's pixel SHA-256 is
recorded in the file; `scripts/build_photo_patches.py --check` rebuilds in memory and compares).

Nine photographs are in colour; five (camera, coins, brick, grass, gravel) are greyscale originals, kept because
ten or more classes make the per-class numbers worth reading. Raw-pixel baselines are in docs/TRANSFER.md.

Spec strings for evaluation and for `data.real`: "photos" (the default file, see `default_path`), "photos:train" /
"photos:test" (force the split), or "photos:PATH" (another file built by scripts/build_photo_patches.py).

Example:
    >>> path = build_photo_patches(default_path())             # ~5 s, no network
    >>> train = load_photos("photos", "train", size=32)        # 5600 images, 14 classes
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

PHOTOS_ENV = "SYNTHSIGHT_PHOTOS"  # path of the built file, overriding the default location
RECIPE_VERSION = 1  # bump when the recipe changes: the default file name carries it, so a stale file is not read
SPLITS = ("train", "test")


@dataclass(frozen=True)
class PhotoSource:
    """One photograph: where it ships and its licence as its package documents it."""

    name: str  # class name
    package: str  # the installed package that ships the file
    loader: str  # how to read it, e.g. skimage.data.astronaut()
    licence: str  # as stated in the package's documentation or README
    credit: str  # photographer / origin, from the same place


SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "scikit-image", "skimage.data.astronaut()",
                "public domain ('No known copyright restrictions, released into the public domain')",
                "NASA Great Images database (Eileen Collins)"),
    PhotoSource("chelsea", "scikit-image", "skimage.data.chelsea()", "CC0 ('No copyright restrictions')",
                "Stefan van der Walt"),
    PhotoSource("coffee", "scikit-image", "skimage.data.coffee()", "CC0 ('No copyright restrictions')",
                "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    PhotoSource("hubble_deep_field", "scikit-image", "skimage.data.hubble_deep_field()",
                "public domain (NASA: 'may be freely used in the public domain')", "NASA / HubbleSite"),
    PhotoSource("immunohistochemistry", "scikit-image", "skimage.data.immunohistochemistry()",
                "'No known copyright restrictions'", "Center for Microscopy And Molecular Imaging (CMMI)"),
    PhotoSource("retina", "scikit-image", "skimage.data.retina()", "CC0 1.0 Universal",
                "Mikael Häggström, via Wikimedia Commons"),
    PhotoSource("rocket", "scikit-image", "skimage.data.rocket()", "public domain (released by SpaceX)",
                "SpaceX (DSCOVR launch on Falcon 9)"),
    PhotoSource("china", "scikit-learn", "sklearn.datasets.load_sample_images() 'china.jpg'",
                "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
                "danielbuechele on Flickr, retrieved by Robert Layton (sklearn/datasets/images/README.txt)"),
    PhotoSource("flower", "scikit-learn", "sklearn.datasets.load_sample_images() 'flower.jpg'",
                "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
                "vultilion on Flickr, retrieved by Robert Layton (sklearn/datasets/images/README.txt)"),
    PhotoSource("camera", "scikit-image", "skimage.data.camera()", "CC0 ('No copyright restrictions')",
                "Lav Varshney (greyscale)"),
    PhotoSource("coins", "scikit-image", "skimage.data.coins()", "'No known copyright restrictions'",
                "Brooklyn Museum Collection (greyscale)"),
    PhotoSource("brick", "scikit-image", "skimage.data.brick()", "CC0", "CC0Textures, Bricks25 (greyscale)"),
    PhotoSource("grass", "scikit-image", "skimage.data.grass()", "CC0", "linolafett on DeviantArt (greyscale)"),
    PhotoSource("gravel", "scikit-image", "skimage.data.gravel()", "CC0", "CC0Textures, Gravel04 (greyscale)"),
)


@dataclass(frozen=True)
class PatchRecipe:
    """How patches are cut; every field is recorded in the built file."""

    seed: int = 0  # seeds tile assignment and window positions (per photograph: adding one changes no other)
    max_side: int = 512  # photographs are scaled down (antialiased) so their shorter side is at most this
    tile: int = 128  # target tile side; tiles are whole, so train and test windows never overlap
    test_fraction: float = 0.25  # share of each photograph's tiles that hold test patches (at least one tile)
    min_window: int = 32  # window side range, drawn log-uniformly, in pixels of the scaled photograph
    max_window: int = 96
    patch_size: int = 64  # stored side (eval resizes to its own size; 64 also serves data.render_size=64)
    train_per_class: int = 400
    test_per_class: int = 150

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 8 <= self.min_window <= self.max_window <= self.tile:
            raise ValueError(f"need 8 <= min_window <= max_window <= tile, got {self.min_window}, "
                             f"{self.max_window}, {self.tile}")
        if self.train_per_class < 1 or self.test_per_class < 1 or self.patch_size < 8:
            raise ValueError("train_per_class and test_per_class must be >= 1 and patch_size >= 8")


class PhotosMissingError(FileNotFoundError):
    """The photograph packages or the built file are missing; the message says how to get them."""


def default_path() -> Path:
    """$SYNTHSIGHT_PHOTOS, else ~/.cache/synthsight/photo-patches-v<RECIPE_VERSION>.npz (XDG_CACHE_HOME honoured)."""
    if os.environ.get(PHOTOS_ENV):
        return Path(os.environ[PHOTOS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "synthsight" / f"photo-patches-v{RECIPE_VERSION}.npz"


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    try:
        import skimage.data as sk
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise PhotosMissingError(
            "the photograph dev set is built from photographs inside scikit-image and scikit-learn; install them "
            "with pip install 'synthsight[stats]' (or `make install`)") from err

    def sklearn_image(name: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            data = load_sample_images()
            return data.images[[Path(f).name for f in data.filenames].index(name)]
        return load

    out: dict[str, Callable[[], np.ndarray]] = {s.name: getattr(sk, s.name) for s in SOURCES
                                                if s.package == "scikit-image"}
    out.update(china=sklearn_image("china.jpg"), flower=sklearn_image("flower.jpg"))
    return out


def _as_rgb(array: np.ndarray, max_side: int) -> torch.Tensor:
    """A photograph (H, W) or (H, W, 3|4) uint8 -> float Tensor[3, h, w] in 0..255, shorter side <= max_side."""
    t = torch.from_numpy(np.array(array, dtype=np.float32))
    t = t[..., None].expand(*t.shape, 3) if t.ndim == 2 else t[..., :3]
    t = t.permute(2, 0, 1)
    short = min(t.shape[1:])
    if short > max_side:
        t = F.interpolate(t[None], scale_factor=max_side / short, mode="bilinear", antialias=True,
                          align_corners=False, recompute_scale_factor=False)[0]
    return t


def split_tiles(height: int, width: int, recipe: PatchRecipe, rng: np.random.Generator
                ) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """(train tiles, test tiles) as (y, x, h, w): a grid of ~recipe.tile px tiles (at least 2 x 2), a seeded
    recipe.test_fraction of them (at least one) for test."""
    rows, cols = max(2, round(height / recipe.tile)), max(2, round(width / recipe.tile))
    th, tw = height // rows, width // cols
    tiles = [(r * th, c * tw, th, tw) for r in range(rows) for c in range(cols)]
    order = rng.permutation(len(tiles))
    n_test = max(1, round(recipe.test_fraction * len(tiles)))
    return [tiles[i] for i in sorted(order[n_test:])], [tiles[i] for i in sorted(order[:n_test])]


def _windows(tiles: list[tuple[int, int, int, int]], n: int, recipe: PatchRecipe,
             rng: np.random.Generator) -> np.ndarray:
    """n windows (y, x, side), each inside one tile: int64 array [n, 3]."""
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        y0, x0, th, tw = tiles[int(rng.integers(len(tiles)))]
        top = min(recipe.max_window, th, tw)
        side = int(np.exp(rng.uniform(np.log(recipe.min_window), np.log(top + 1))))
        side = min(max(side, recipe.min_window), top)
        out[i] = (y0 + rng.integers(0, th - side + 1), x0 + rng.integers(0, tw - side + 1), side)
    return out


def _cut(photo: torch.Tensor, windows: np.ndarray, size: int) -> np.ndarray:
    """uint8 array [n, 3, size, size] of the windows, antialiased bilinear resize (windows of one side at once)."""
    out = np.empty((len(windows), 3, size, size), dtype=np.uint8)
    for side in np.unique(windows[:, 2]).tolist():
        rows = np.flatnonzero(windows[:, 2] == side)
        crops = torch.stack([photo[:, y:y + side, x:x + side] for y, x, _ in windows[rows].tolist()])
        patches = F.interpolate(crops, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[rows] = patches.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def build_arrays(recipe: PatchRecipe = PatchRecipe()) -> dict[str, np.ndarray]:
    """Every array of the built file (see `build_photo_patches`), in memory."""
    loaders = _loaders()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("train_images", "train_labels", "train_boxes", "test_images",
                                           "test_labels", "test_boxes")}
    meta = []
    for label, source in enumerate(SOURCES):
        raw = np.ascontiguousarray(loaders[source.name]())
        photo = _as_rgb(raw, recipe.max_side)
        rng = np.random.default_rng([recipe.seed, label])
        train_tiles, test_tiles = split_tiles(photo.shape[1], photo.shape[2], recipe, rng)
        for split, tiles, n in (("train", train_tiles, recipe.train_per_class),
                                ("test", test_tiles, recipe.test_per_class)):
            windows = _windows(tiles, n, recipe, rng)
            parts[f"{split}_images"].append(_cut(photo, windows, recipe.patch_size))
            parts[f"{split}_labels"].append(np.full(n, label, dtype=np.int64))
            parts[f"{split}_boxes"].append(np.column_stack([np.full(n, label), windows]))
        meta.append({**asdict(source), "sha256": hashlib.sha256(raw.tobytes()).hexdigest(),
                     "original_shape": list(raw.shape), "scaled_shape": list(photo.shape[1:]),
                     "train_tiles": len(train_tiles), "test_tiles": len(test_tiles)})
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["classes"] = np.array([s.name for s in SOURCES])
    arrays["meta"] = np.array(json.dumps({"version": RECIPE_VERSION, "recipe": asdict(recipe), "sources": meta}))
    return arrays


def build_photo_patches(path: Path, recipe: PatchRecipe = PatchRecipe()) -> Path:
    """Build the set and write it atomically to `path` (.npz: {train,test}_{images,labels,boxes}, classes, meta).

    images: uint8 [N, 3, S, S]; labels: int64 [N]; boxes: int64 [N, 4] = (class, y, x, side) of each window in
    the scaled photograph; meta: JSON with the recipe and each source's licence, credit and pixel SHA-256.
    """
    path = Path(path)
    arrays = build_arrays(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)  # uncompressed: ~95 MB, written in a second (compression took ~12 s for half)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def parse_spec(spec: str, split: str) -> tuple[Path, str]:
    """'photos' / 'photos:test' / 'photos:PATH' -> (file, split)."""
    _, _, rest = spec.partition(":")
    if rest in SPLITS:
        return default_path(), rest
    return (Path(rest).expanduser() if rest else default_path()), split


def read_meta(path: Path) -> dict:
    """The recipe and sources recorded in a built file."""
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"]))


def load_photos(spec: str, split: str = "train", size: int = 32, limit: int | None = None, seed: int = 0):
    """The photograph dev set as LabeledImages (uint8 [N, 3, size, size], 14 classes); see the module doc."""
    from synthsight.eval.data import LabeledImages, resize_images, stratified_subset

    path, split = parse_spec(spec, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for photos; use 'train' or 'test'")
    if not path.is_file():
        raise PhotosMissingError(
            f"the photograph dev set {path} is not built yet: run `python scripts/build_photo_patches.py` (or "
            f"`make data`; ~5 s, offline, needs scikit-image), or set {PHOTOS_ENV} to a built file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = [str(c) for c in npz["classes"]]
            version = json.loads(str(npz["meta"])).get("version")
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path} is not a photograph dev set ({err}); rebuild it with "
                         "`python scripts/build_photo_patches.py --force`") from err
    labels_t = torch.from_numpy(labels.astype(np.int64))
    keep = stratified_subset(labels_t, limit, seed) if limit else torch.arange(len(labels_t))
    pixels = torch.from_numpy(images[keep.numpy()])
    source = f"photos:{split} ({path}, recipe v{version})"
    return LabeledImages(resize_images(pixels, size), labels_t[keep], classes, source)

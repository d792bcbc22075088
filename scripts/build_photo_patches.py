#!/usr/bin/env python3
"""Build the photograph dev set (synthsight/eval/photos.py) from photographs inside scikit-image and scikit-learn.

Offline and deterministic (~5 s). Writes the .npz that `--data photos` reads: by default
~/.cache/synthsight/photo-patches-v1.npz, or $SYNTHSIGHT_PHOTOS.

Usage:
    python scripts/build_photo_patches.py                 # build (replace) the default file
    python scripts/build_photo_patches.py --if-missing    # what `make data` runs
    python scripts/build_photo_patches.py --check         # rebuild in memory, compare with the file
    python scripts/build_photo_patches.py --out my.npz --train-per-class 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from synthsight.eval.photos import PatchRecipe, PhotosMissingError, build_arrays, build_photo_patches, default_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help=f"output .npz (default {default_path()})")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the file exists")
    p.add_argument("--check", action="store_true", help="rebuild in memory and compare with the file (exit 1 if not)")
    p.add_argument("--train-per-class", type=int, default=PatchRecipe.train_per_class)
    p.add_argument("--test-per-class", type=int, default=PatchRecipe.test_per_class)
    p.add_argument("--seed", type=int, default=PatchRecipe.seed)
    args = p.parse_args(argv)
    out = args.out or default_path()
    recipe = PatchRecipe(seed=args.seed, train_per_class=args.train_per_class, test_per_class=args.test_per_class)
    try:
        if args.check:
            with np.load(out, allow_pickle=False) as npz:
                fresh = build_arrays(recipe)
                bad = [k for k in fresh if k not in npz.files or not np.array_equal(npz[k], fresh[k])]
            print(f"{out}: " + ("identical to a fresh build" if not bad else f"DIFFERS in {', '.join(bad)}"))
            return 1 if bad else 0
        if args.if_missing and out.is_file():
            return 0
        t0 = time.perf_counter()
        build_photo_patches(out, recipe)
    except PhotosMissingError as err:
        print(f"build_photo_patches: {err}", file=sys.stderr)
        return 2
    print(f"photograph dev set: {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The photograph dev set: tiles split train/test without overlap, deterministic patches, licences recorded,
loadable as an eval data spec (`photos:PATH`); the default file, when built, has the documented size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthsight.eval.data import load_dataset
from synthsight.eval.photos import (PHOTOS_ENV, SOURCES, PatchRecipe, PhotosMissingError, _windows, default_path,
                                    parse_spec, read_meta, split_tiles)

ROOT = Path(__file__).resolve().parents[1]
SMALL = PatchRecipe(train_per_class=6, test_per_class=3)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether any window (y, x, side) of a shares a pixel with any of b."""
    ya, xa, sa = (a[:, i:i + 1] for i in range(3))
    yb, xb, sb = (b[:, i] for i in range(3))
    return bool(((ya < yb + sb) & (yb < ya + sa) & (xa < xb + sb) & (xb < xa + sa)).any())


def test_tiles_and_windows_keep_train_and_test_apart() -> None:
    recipe = PatchRecipe()
    for h, w in [(300, 451), (512, 512), (427, 640)]:
        rng = np.random.default_rng(3)
        train, test = split_tiles(h, w, recipe, rng)
        assert len(test) == max(1, round(0.25 * (len(train) + len(test)))) and not set(train) & set(test)
        tr, te = _windows(train, 300, recipe, rng), _windows(test, 100, recipe, rng)
        assert tr[:, 2].min() >= 32 and tr[:, 2].max() <= 96
        assert (tr[:, 0] + tr[:, 2]).max() <= h and (tr[:, 1] + tr[:, 2]).max() <= w
        assert not _overlap(tr, te)
    # the same seed gives the same split and windows
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert split_tiles(400, 600, recipe, a) == split_tiles(400, 600, recipe, b)
    assert np.array_equal(_windows(split_tiles(400, 600, recipe, a)[0], 20, recipe, a),
                          _windows(split_tiles(400, 600, recipe, b)[0], 20, recipe, b))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    pytest.importorskip("skimage")
    from synthsight.eval.photos import build_photo_patches

    return build_photo_patches(tmp_path_factory.mktemp("photos") / "p.npz", SMALL)


def test_built_set_is_balanced_disjoint_licensed_and_loadable(built: Path) -> None:
    with np.load(built) as npz:
        assert npz["train_images"].shape == (14 * 6, 3, 64, 64) and npz["train_images"].dtype == np.uint8
        assert npz["test_images"].shape == (14 * 3, 3, 64, 64)
        assert np.bincount(npz["train_labels"]).tolist() == [6] * 14
        for c in range(14):  # no test window shares a pixel with a training window of the same photograph
            tr = npz["train_boxes"][npz["train_boxes"][:, 0] == c, 1:]
            te = npz["test_boxes"][npz["test_boxes"][:, 0] == c, 1:]
            assert not _overlap(tr, te)
        colour = npz["train_images"][npz["train_labels"] == 0].astype(int)  # astronaut: a colour photograph
        assert (colour[:, 0] != colour[:, 2]).any()
    meta = read_meta(built)
    assert [s["name"] for s in meta["sources"]] == [s.name for s in SOURCES]
    assert all(s["licence"] and s["credit"] and len(s["sha256"]) == 64 for s in meta["sources"])
    assert meta["recipe"]["train_per_class"] == 6
    train = load_dataset(f"photos:{built}", "train", size=32)
    test = load_dataset(f"photos:{built}", "test", size=16, limit=14)
    assert train.images.shape == (84, 3, 32, 32) and len(train.classes) == 14 and train.classes[0] == "astronaut"
    assert test.images.shape == (14, 3, 16, 16) and sorted(test.labels.tolist()) == list(range(14))


def test_build_is_deterministic(built: Path, tmp_path: Path) -> None:
    from synthsight.eval.photos import build_arrays

    fresh = build_arrays(SMALL)
    with np.load(built) as npz:
        for key, value in fresh.items():
            assert np.array_equal(npz[key], value), key


def test_spec_forms_and_missing_file_says_how_to_build(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PHOTOS_ENV, str(tmp_path / "none.npz"))
    assert default_path() == tmp_path / "none.npz"
    assert parse_spec("photos", "train") == (tmp_path / "none.npz", "train")
    assert parse_spec("photos:test", "train") == (tmp_path / "none.npz", "test")
    assert parse_spec("photos:/x/y.npz", "test") == (Path("/x/y.npz"), "test")
    with pytest.raises(PhotosMissingError, match="scripts/build_photo_patches.py"):
        load_dataset("photos", "test")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset(f"photos:{tmp_path / 'x.npz'}", "val")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 4, 4), np.uint8), labels=np.zeros(2, int))
    with pytest.raises(ValueError, match="not a photograph dev set"):
        load_dataset(f"photos:{bad}", "train")


def test_script_if_missing_and_check(built: Path, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_photo_patches", ROOT / "scripts" / "build_photo_patches.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(built), "--if-missing"]) == 0
    assert capsys.readouterr().out == ""  # present: nothing rebuilt
    assert script.main(["--out", str(built), "--check", "--train-per-class", "6", "--test-per-class", "3"]) == 0
    assert "identical" in capsys.readouterr().out
    assert script.main(["--out", str(built), "--check"]) == 1  # another recipe: the file differs
    assert "DIFFERS" in capsys.readouterr().out


@pytest.mark.skipif(not default_path().is_file(), reason="photograph dev set not built (make data)")
def test_default_set_has_the_documented_size() -> None:
    train, test = load_dataset("photos", "train"), load_dataset("photos:test")
    assert (len(train), len(test), len(train.classes)) == (5600, 2100, 14)

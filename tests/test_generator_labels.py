"""Class labels of the families with categories (fractal_ifs, contours): range, category parameters as a pure
function of (category_seed, label), instance variation within a class, and the per-variant category rules
(contours' own rules: tests/test_contours.py)."""

from __future__ import annotations

import pytest
import torch

from synthsight.generators import create_generator
from synthsight.generators.ifs import points as fp
from synthsight.generators.ifs import systems as fi
from synthsight.generators.base import image_rng
from synthsight.generators.contour_rings import SmoothRings
from synthsight.generators.contours import Contours
from synthsight.generators.fractal_ifs import FractalIFS

SIZE = 32
CASES = [("fractal_ifs", v) for v in FractalIFS.variants] + [("contours", v) for v in Contours.variants]
IDS = [f"{f}-{v}" for f, v in CASES]


def _make(family: str, variant: str, **kwargs):
    return (FractalIFS if family == "fractal_ifs" else Contours)(variant, SIZE, **kwargs)


def _params(gen, indices, seed=0):
    return [gen.sample_params(image_rng(seed, i, gen.salt)) for i in indices]


def _same_label_pairs(params):
    by_label: dict[int, list[int]] = {}
    for i, p in enumerate(params):
        by_label.setdefault(int(p["label"]), []).append(i)
    return [idx for idx in by_label.values() if len(idx) >= 2]


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_labels_in_range_and_match_params(family: str, variant: str) -> None:
    gen = create_generator(family, variant, SIZE)
    assert gen.num_classes == 1000
    images, labels = gen.generate_with_labels(range(24), seed=0)
    assert labels.dtype == torch.int64 and labels.shape == (24,)
    assert (labels >= 0).all() and (labels < gen.num_classes).all()
    assert len(set(labels.tolist())) > 12  # uniform over 1000 classes: few repeats
    params = _params(gen, range(24))
    assert all(p["label"].dtype == torch.int64 and p["label"].dim() == 0 for p in params)
    assert labels.tolist() == [int(p["label"]) for p in params]


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_same_label_same_category_and_different_images(family: str, variant: str) -> None:
    gen = _make(family, variant, num_classes=3)
    params = _params(gen, range(12))
    groups = _same_label_pairs(params)
    assert groups, "with 3 classes some of 12 images must share a label"
    images = gen.render(params, torch.device("cpu"))
    other = _make(family, variant, num_classes=3)  # a fresh instance: same categories
    for idx in groups:
        label = int(params[idx[0]]["label"])
        if family == "fractal_ifs":
            system = gen.category(label)
            assert torch.equal(system, other.category(label))
            for i in idx:
                n = int(params[i]["n_maps"])
                assert n == system.shape[0]
                ratio = params[i]["maps"][:n] / system
                changed = (ratio - 1).abs() > 1e-6
                if variant == "svd":  # Anderson & Farrell: one map (all six numbers) times U(0.8, 1.1), or none
                    rows = changed.any(1).nonzero().flatten()
                    assert len(rows) <= 1
                    if len(rows):
                        factor = ratio[rows[0]]
                        assert (0.8 - 1e-6 <= factor).all() and (factor <= 1.1 + 1e-6).all()
                        assert torch.allclose(factor, factor[0].expand(6), atol=1e-5)
                elif variant.startswith("fractaldb"):  # FractalDB: one parameter of every map times one factor
                    cols = changed.any(0).nonzero().flatten()
                    assert len(cols) <= 1
                    if len(cols):
                        factor = ratio[:, cols[0]]
                        assert torch.allclose(factor, factor[0].expand(n), atol=1e-5)
                        assert min(abs(float(factor[0]) - f) for f in fi.SCALE_FACTORS) < 1e-5
                else:
                    assert torch.equal(params[i]["maps"][:n], system)
        else:
            cat = gen.category(label)
            assert cat == other.category(label)
            for i in idx:
                assert int(params[i]["vertices"]) == cat["vertices"]
                if variant in SmoothRings.variants:
                    assert int(params[i]["cells"]) == cat["cells"]
                    assert int(params[i]["lines"]) <= cat["lines"]
                else:
                    assert int(params[i]["lines"]) == cat["lines"]
                    assert params[i]["shape"][:2].tolist() == pytest.approx([cat["noise"], cat["width"]])
        for i, j in zip(idx, idx[1:]):
            assert not torch.equal(images[i], images[j]), "two images of one class are identical"


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_category_seed_changes_categories_not_labels(family: str, variant: str) -> None:
    a = _make(family, variant)
    b = _make(family, variant, category_seed=1)
    pa, pb = _params(a, range(6)), _params(b, range(6))
    assert [int(p["label"]) for p in pa] == [int(p["label"]) for p in pb]
    label = int(pa[0]["label"])
    if family == "fractal_ifs":
        assert not torch.equal(a.category(label), b.category(label))
    else:
        assert a.category(label) != b.category(label)
    assert not torch.equal(a.render(pa[:1], torch.device("cpu")), b.render(pb[:1], torch.device("cpu")))


def test_bad_labels_and_options_rejected() -> None:
    with pytest.raises(ValueError):
        FractalIFS("svd", SIZE).category(1000)
    with pytest.raises(ValueError):
        Contours("rcdb", SIZE).category(-1)
    with pytest.raises(ValueError):
        FractalIFS("fractaldb", SIZE, num_classes=None)
    with pytest.raises(ValueError):
        Contours("rcdb", SIZE, num_classes=0)


# ------------------------------------------------------------------ fractal_ifs specifics
def test_svd_systems_follow_anderson_farrell() -> None:
    rng = torch.Generator().manual_seed(0)
    for n in (2, 3, 4):
        for _ in range(20):
            maps = fi.svd_system(rng, n).double()
            a = maps[:, :4].view(n, 2, 2)
            s = torch.linalg.svdvals(a)  # [n, 2], descending
            assert (s <= 1 + 1e-5).all() and (s >= 0).all()
            sigma = (s[:, 0] + 2 * s[:, 1]).sum().item()
            assert (5 + n) / 2 - 1e-4 <= sigma <= (6 + n) / 2 + 1e-4
            assert (maps[:, 4:].abs() <= 1).all()


def test_svd_without_classes_draws_a_system_per_image() -> None:
    gen = FractalIFS("svd", SIZE, num_classes=None)
    images, labels = gen.generate_with_labels(range(4), seed=0)
    assert (labels == -1).all() and images.shape == (4, 3, SIZE, SIZE)
    params = _params(gen, range(4))
    assert "label" not in params[0]
    assert not torch.equal(params[0]["maps"], params[1]["maps"])


def test_fractaldb_systems_pass_the_filling_filter() -> None:
    labels = list(range(12))
    systems = fi.fractaldb_categories(labels, 0, 0.2)
    rng = torch.Generator().manual_seed(123)
    maps = torch.stack([fi.padded(s) for s in systems])
    n = torch.tensor([s.shape[0] for s in systems])
    probs = torch.stack([fi.map_probabilities(m, int(k)) for m, k in zip(maps, n)])
    assert ((n >= 2) & (n <= 7)).all()
    assert all(((s >= -1) & (s <= 1)).all() for s in systems)  # a..f ~ U(-1, 1)
    assert (fi.contraction_bound(maps, probs) < 0).all()
    # re-checked with fresh chain shuffles: a run's fill is noisy (the min/max box rests on a few extreme points),
    # but the attractors fill ~20% or more, not just in the lucky runs that selected them
    runs = []
    for _ in range(5):
        choices = torch.randint(0, fp.BANK, (len(labels), fi._SEARCH_STEPS), generator=rng, dtype=torch.uint8)
        runs.append(fi.fill_ratio(maps, probs, n, choices))
    fills = torch.stack(runs)
    assert (fills.mean(0) >= 0.16).all() and fills.median() >= 0.2, fills
    # and the filter does reject: a system whose attractor is a line segment
    line = torch.zeros(1, fi.MAX_MAPS, 6)
    line[0, 0] = torch.tensor([0.5, 0.0, 0.0, 0.01, 0.5, 0.0])
    line[0, 1] = torch.tensor([0.5, 0.0, 0.0, 0.01, -0.5, 0.0])
    n_line = torch.tensor([2])
    p_line = fi.map_probabilities(line, 2)
    assert fi.fill_ratio(line, p_line, n_line, choices[:1]) < 0.2


def test_fractaldb_category_independent_of_search_company() -> None:
    saved = dict(fi._FRACTALDB)
    try:
        fi._FRACTALDB.clear()
        alone = fi.fractaldb_categories([7], 5, 0.2)[0]
        fi._FRACTALDB.clear()
        together = fi.fractaldb_categories([3, 7, 11, 19], 5, 0.2)[1]
        assert torch.equal(alone, together)
    finally:
        fi._FRACTALDB.clear()
        fi._FRACTALDB.update(saved)


def test_one_p_frac_copies_perturb_one_system() -> None:
    gen = FractalIFS("1p_frac", SIZE)
    base = fi.one_p_base(0, 0.2)
    copies = [gen.category(c) for c in range(20)]
    for c in copies:
        assert c.shape == base.shape
        ratio = c / base
        assert ((ratio >= 0.9 - 1e-6) & (ratio <= 1.1 + 1e-6)).all()
    assert len({tuple(c.flatten().tolist()) for c in copies}) == 20
    # the copies' spread follows D: a tenth of U(0.9, 1.1)'s range is used on average... roughly uniform
    ratios = torch.stack([c / base for c in copies]).flatten()
    assert 0.04 < (ratios - 1).abs().mean() < 0.06

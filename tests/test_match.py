"""data.match: the target's figures choose family weights and views.grayscale_p; runs record what was measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthsight.analysis.match import image_figures, match_families, solve_weights
from synthsight.config import ConfigError, load_config
from tests.conftest import TINY

CANDIDATES = ["spectrum/gray", "spectrum/color"]


def _npz(path: Path, grey: bool) -> Path:
    """40 images of 32 px: grey blobs on a black background, or colour noise everywhere."""
    rng = np.random.default_rng(0)
    if grey:
        images = np.zeros((40, 32, 32), np.uint8)
        images[:, 8:24, 8:24] = rng.integers(100, 255, (40, 16, 16))
    else:
        images = rng.integers(0, 255, (40, 32, 32, 3)).astype(np.uint8)
    np.savez(path, images=images, labels=np.arange(40) % 2)
    return path


def test_image_figures_tell_grey_from_colour_and_find_backgrounds() -> None:
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, 8:24, 8:24] = torch.rand(4, 1, 16, 16)  # grey objects on black
    f = image_figures(x)
    assert f["grey"] == 1.0 and f["chroma"] == pytest.approx(0.0, abs=1e-6)
    assert f["background"] >= 0.7  # 75% of the pixels are the black border colour
    c = image_figures(torch.rand(4, 3, 32, 32))
    assert c["grey"] == 0.0 and c["chroma"] > 0.1 and c["background"] < 0.3


def test_solve_weights_finds_an_exact_mixture() -> None:
    families = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    target = 0.25 * families[0] + 0.75 * families[1]
    w = solve_weights(families, target, ridge=0.0)
    assert w == pytest.approx([0.25, 0.75, 0.0], abs=1e-3) and w.sum() == pytest.approx(1.0)


def test_grey_target_gets_grey_families_and_grey_views(tmp_path: Path) -> None:
    grey = match_families(str(_npz(tmp_path / "g.npz", True)), CANDIDATES, n=40, family_n=16)
    assert max(grey.weights, key=grey.weights.get) == "spectrum/gray"
    assert grey.options == {"views.grayscale_p": 1.0} and grey.target_figures["grey"] == 1.0
    colour = match_families(str(_npz(tmp_path / "c.npz", False)), CANDIDATES, n=40, family_n=16)
    assert colour.weights["spectrum/color"] > 0.8 and sum(colour.weights.values()) == pytest.approx(1.0)
    assert colour.options == {"views.grayscale_p": 0.2}  # the config's own, the target has no grey images
    assert set(colour.family_figures) == set(CANDIDATES) and colour.n_images == 40


def test_pretrain_run_matches_records_and_reuses(tmp_path: Path, monkeypatch) -> None:
    import synthsight.analysis.match as match
    from synthsight.runs import pretrain_run

    target = _npz(tmp_path / "g.npz", True)
    cfg = load_config("demo", TINY + [f"data.match={target}", f"data.match_families=[{', '.join(CANDIDATES)}]",
                                      "trainer.steps=4", "trainer.checkpoint_every=2"])
    calls = []
    real = match.match_families
    monkeypatch.setattr(match, "match_families", lambda *a, **k: calls.append(1) or real(*a, n=40, family_n=16))
    run = tmp_path / "run"
    pretrain_run(cfg, run, progress=False)
    saved = json.loads((run / "config.json").read_text())
    record = json.loads((run / "match.json").read_text())
    assert saved["data"]["families"] == list(record["weights"]) and saved["views"]["grayscale_p"] == 1.0
    assert saved["data"]["match"] == str(target)  # the config says it was matched, and to what
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["match"]["target_figures"] == record["target_figures"]
    from synthsight.config import config_from_dict

    longer = config_from_dict({**cfg.to_dict(), "trainer": {**cfg.to_dict()["trainer"], "steps": 6}})
    pretrain_run(longer, run, resume=True, progress=False)
    assert len(calls) == 1  # the resumed run reused match.json


def test_match_config_checks_and_study_reference_drops_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.match is empty"):
        load_config("demo", ["data.match=' '"])
    from synthsight.study.spec import expand, parse_study

    spec = parse_study({"base": {"preset": "demo"}, "budget": {"images": 256}, "eval": {"sets": {"p": "photos"}},
                        "variations": [{"name": "plain", "set": {}},
                                       {"name": "matched", "set": {"data.match": "photos"}}]})
    refs = [c for c in expand(spec).cells if c.kind == "real"]
    assert len(refs) == 1 and refs[0].config["data"]["match"] is None  # one reference, shared, not matched

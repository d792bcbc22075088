"""Analysis of frozen features: unit selectivity, 2-D embeddings, retrieval, attention and per-class plots."""

from __future__ import annotations

import pytest
import torch

from synthsight.analysis.attention_plot import plot_attention, upsample_maps
from synthsight.analysis.embedding import embed_2d, plot_embeddings
from synthsight.analysis.per_class import compare_per_class, plot_per_class_diff
from synthsight.analysis.retrieval import pick_queries, plot_retrieval, retrieve
from synthsight.analysis.units import plot_selectivity_histogram, plot_top_units, selectivity_index, unit_selectivity

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 1000


def _blobs(n_per=10, classes=3, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per)
    feats = torch.randn(len(labels), dim, generator=g) * 0.1
    feats[torch.arange(len(labels)), labels % dim] += 2.0  # class c lights up unit c
    images = (torch.rand(len(labels), 3, 8, 8, generator=g) * 255).to(torch.uint8)
    return feats, labels, images


def test_selectivity_index_hand_examples():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    one_class = torch.tensor([3.0, 1.0, 0, 0, 0, 0])  # active for class 0 only -> 1
    equal = torch.full((6,), 2.0)  # the same for every class -> 0
    half = torch.tensor([3.0, 3.0, 1.0, 1.0, 1.0, 1.0])  # (3 - 1) / (3 + 1) = 0.5
    silent = torch.zeros(6)  # never active: defined as 0
    si, preferred, shifted = selectivity_index(torch.stack([one_class, equal, half, silent], dim=1), labels)
    assert si.tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0])
    assert preferred[:1].tolist() == [0] and shifted == 0
    sel = unit_selectivity(torch.stack([one_class, equal, half, silent], dim=1), labels)
    assert sel.n_selective == 1  # 0.5 is not above the threshold
    assert sel.to_dict()["n_units"] == 4


def test_selectivity_shifts_negative_units_only():
    labels = torch.tensor([0, 0, 1, 1])
    shifted_unit = torch.tensor([1.0, 1.0, -1.0, -1.0])  # shifted by +1 -> [2, 2, 0, 0] -> SI 1
    si, _, shifted = selectivity_index(shifted_unit.unsqueeze(1), labels)
    assert si.item() == pytest.approx(1.0) and shifted == 1


def test_selectivity_of_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="at least two classes"):
        selectivity_index(torch.rand(5, 3), torch.zeros(5, dtype=torch.long))


def test_unit_plots_are_written(tmp_path):
    feats, labels, images = _blobs()
    sel = unit_selectivity(feats, labels)
    assert sel.n_selective >= 3
    assert _is_png(plot_selectivity_histogram({"a": sel, "b": unit_selectivity(torch.rand(30, 6), labels)},
                                              tmp_path / "hist.png"))
    assert _is_png(plot_top_units(feats, images, sel, tmp_path / "top.png", ["x", "y", "z"], n_units=3, n_images=4))


def test_embedding_is_seeded_and_plotted(tmp_path):
    feats, labels, _ = _blobs(n_per=12)
    a = embed_2d(feats, labels, n_points=30, seed=0, method="tsne")
    b = embed_2d(feats, labels, n_points=30, seed=0, method="tsne")
    assert a.points.shape == (30, 2) and a.method == "t-SNE"
    assert (a.points == b.points).all() and (a.labels == labels[a.indices].numpy()).all()
    assert _is_png(plot_embeddings({"ours": a, "baseline": b}, ["x", "y", "z"], tmp_path / "emb.png"))


def test_embedding_of_one_class_is_defined_and_tiny_input_is_an_error(tmp_path):
    feats, _, _ = _blobs(n_per=10)
    one = embed_2d(feats, torch.zeros(len(feats), dtype=torch.long), n_points=100, method="tsne")
    assert one.points.shape == (30, 2)
    assert _is_png(plot_embeddings({"one class": one}, None, tmp_path / "one.png"))
    with pytest.raises(ValueError, match="at least 4 points"):
        embed_2d(feats[:3], torch.zeros(3, dtype=torch.long))


def test_retrieval_finds_same_class_neighbours_and_plots(tmp_path):
    feats, labels, images = _blobs()
    q = pick_queries(labels, seed=1)
    assert sorted(labels[q].tolist()) == [0, 1, 2]
    ret = retrieve(feats, labels, feats[q], labels[q], k=4, exclude=q)
    assert ret.neighbours.shape == (3, 4) and not (ret.neighbours == q.unsqueeze(1)).any()
    assert ret.precision == 1.0
    assert _is_png(plot_retrieval(ret, images[q], images, ["x", "y", "z"], tmp_path / "ret.png"))


def test_attention_plot(tmp_path):
    maps = torch.rand(2, 3, 4, 4)
    up = upsample_maps(maps, (16, 16))
    assert up.shape == (2, 3, 16, 16) and float(up.min()) >= 0 and float(up.max()) <= 1
    images = (torch.rand(2, 3, 16, 16) * 255).to(torch.uint8)
    assert _is_png(plot_attention(maps, images, tmp_path / "att.png", torch.tensor([0, 1]), ["x", "y"]))


def test_per_class_diff(tmp_path):
    cmp = compare_per_class(["a", "b", "c"], [0.9, 0.5, None], [0.7, 0.6, 0.5], protocol="knn")
    assert cmp.classes == ["a", "b"] and cmp.diff == pytest.approx([20.0, -10.0])
    assert _is_png(plot_per_class_diff(cmp, tmp_path / "pc.png", "ours", "random"))
    with pytest.raises(ValueError, match="one accuracy per class"):
        compare_per_class(["a"], [0.1, 0.2], [0.3, 0.4])


def test_analyse_writes_figures_and_summary_and_notes_what_it_skips(tmp_path):
    import json

    from synthsight.analysis.run import AnalysisSettings, EncoderData, analyse
    from synthsight.eval.data import LabeledImages

    feats, labels, images = _blobs()
    test = LabeledImages(images, labels, ["x", "y", "z"], "blobs")
    ours = EncoderData("ours", feats, feats, per_class={"knn": [1.0, 0.5, None]})
    base = EncoderData("random init (same architecture)", torch.rand_like(feats), torch.rand_like(feats),
                       per_class={"knn": [0.5, 0.5, 0.5]})
    settings = AnalysisSettings(n_embed=30, k_retrieval=3, n_units=2, n_unit_images=3)
    result = analyse([base, ours], test, tmp_path, settings, train=test, progress=False, log=lambda _: None)
    names = {f.name for f in result.figures}
    assert names == {"embedding", "units_selectivity", "units_top", "retrieval", "retrieval_baseline", "per_class"}
    assert all(_is_png(f.path) for f in result.figures)
    summary = json.loads((tmp_path / "analysis.json").read_text())
    assert summary["baseline"] == base.name and summary["units"]["ours"]["n_selective"] >= 3
    assert summary["per_class"]["classes"] == ["x", "y"]  # z has no accuracy for ours
    assert any("attention" in n for n in result.notes)  # no network given

    one = LabeledImages(images, torch.zeros_like(labels), ["only"], "one class")
    result = analyse([base, ours], one, tmp_path / "one", settings, progress=False, log=lambda _: None)
    assert any(n.startswith("unit selectivity: skipped") and "two classes" in n for n in result.notes)
    assert "embedding" in {f.name for f in result.figures}


def _square_on_black(n: int = 3) -> torch.Tensor:
    """Tensor[n, 3, 16, 16] in [0, 1]: a grey 8x8 square (patches (1..2, 1..2) of a 4x4 grid of 4-px patches)."""
    images = torch.zeros(n, 3, 16, 16)
    images[:, :, 4:12, 4:12] = 0.6
    return images


def test_foreground_patches_are_what_differs_from_the_border():
    from synthsight.analysis.attention_focus import foreground_patches

    fg = foreground_patches(_square_on_black(), patch=4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True
    assert fg.shape == (3, 4, 4) and (fg == expected).all()
    white = 1 - _square_on_black(1)  # a dark square on white: the border colour is the background, whatever it is
    assert (foreground_patches(white, patch=4)[0] == expected).all()
    assert (foreground_patches((white * 255).to(torch.uint8), patch=4)[0] == expected).all()
    with pytest.raises(ValueError, match="multiples of 5"):
        foreground_patches(_square_on_black(), patch=5)


def test_attention_focus_is_the_share_on_the_object_against_its_area():
    from synthsight.analysis.attention_focus import attention_focus, foreground_patches

    fg = foreground_patches(_square_on_black(), patch=4)  # 4 of 16 patches: area share 0.25
    uniform = torch.full((3, 2, 4, 4), 0.5)  # any scale: maps are normalised per image and head
    focus = attention_focus(uniform, fg)
    assert focus == {"attention_share": 0.25, "area_share": 0.25, "ratio": 1.0, "separation": 0.0,
                     "separation_best_head": 0.0, "images": 3}
    on_object = fg[:, None].float().expand(3, 2, 4, 4) * 3.0  # all mass on the object
    focus = attention_focus(on_object, fg)
    assert focus["ratio"] == 4.0 and focus["separation"] == 1.0
    half = torch.stack([on_object[:, 0], uniform[:, 1]], dim=1)  # one head on the object, one uniform: mean of heads
    focus = attention_focus(half, fg)
    assert focus["attention_share"] == pytest.approx(0.625)
    assert focus["separation"] == 0.5 and focus["separation_best_head"] == 1.0
    around = 1 - fg[:, None].float().expand(3, 2, 4, 4)  # everything but the object: as object-shaped, share 0
    focus = attention_focus(around, fg)
    assert focus["attention_share"] == 0 and focus["separation"] == 1.0
    noisy = on_object + 6 * torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))  # overlapping values
    assert 0 < attention_focus(noisy, fg)["separation"] < 1
    with pytest.raises(ValueError, match="both foreground and background"):
        attention_focus(uniform, torch.zeros_like(fg))

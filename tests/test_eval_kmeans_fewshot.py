"""k-means, few-shot, k=20/200 k-NN, the protocol registry and per-class results, on data with known answers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from synthsight.config import EvalConfig
from synthsight.eval.fewshot import fewshot_eval, support_indices
from synthsight.eval.kmeans import hungarian_accuracy, kmeans_eval
from synthsight.eval.knn import knn_eval
from synthsight.eval.protocols import PROTOCOLS, ProtocolInputs
from synthsight.eval.result import ProtocolResult, per_class_accuracy
from synthsight.eval.run import EncoderResult, EvalReport, metric_rows, results_table, run_protocols
from tests.test_eval_protocols import clusters

FEATURE_PROTOCOLS = ["knn", "linear", "kmeans", "fewshot"]


@pytest.fixture(scope="module")
def separable():
    return (*clusters(40, seed=0), *clusters(20, seed=1))


@pytest.fixture(scope="module")
def shuffled(separable):
    train_x, train_y, test_x, test_y = separable
    g = torch.Generator().manual_seed(0)
    return train_x, train_y[torch.randperm(200, generator=g)], test_x, test_y[torch.randperm(100, generator=g)]


def test_every_protocol_is_perfect_on_separable_clusters(separable) -> None:
    results = run_protocols(*separable, FEATURE_PROTOCOLS, EvalConfig(fewshot_draws=3))
    assert all(r.top1 >= 0.99 for r in results.values())
    assert results["kmeans"].metrics["nmi"] > 0.99 and results["kmeans"].metrics["ari"] > 0.99
    assert results["knn"].metrics.keys() == {"top1_k20", "top1_k200"}  # k=200 clamped to the 200 images
    assert results["fewshot"].metrics["top1_1shot"] > 0.99 and results["fewshot"].settings["shots"] == [1, 5, 10]
    for r in results.values():
        assert len(r.per_class) == 5 and min(r.per_class) > 0.95
        json.dumps(r.to_dict())


def test_shuffled_labels_give_chance(shuffled) -> None:
    results = run_protocols(*shuffled, FEATURE_PROTOCOLS, EvalConfig(fewshot_draws=3))
    assert results["knn"].top1 < 0.4 and results["fewshot"].metrics["top1_5shot"] < 0.4  # chance is 0.2
    assert results["kmeans"].metrics["nmi"] < 0.2 and abs(results["kmeans"].metrics["ari"]) < 0.1
    assert results["kmeans"].top1 < 0.45


def test_descriptions_spell_out_the_new_protocols(separable) -> None:
    results = run_protocols(*separable, FEATURE_PROTOCOLS, EvalConfig(fewshot_draws=3))
    assert "(k=200: " in results["knn"].describe()
    km = results["kmeans"].describe()
    assert "k=5 = number of classes" in km and "NMI 1.000" in km and "Hungarian-matched accuracy 100.00%" in km
    fs = results["fewshot"].describe()
    assert "nearest class mean" in fs and "3 seeded draws" in fs and "1-shot 100.00 ± 0.00%" in fs


def test_knn_reports_both_k_from_one_search(separable) -> None:
    r = knn_eval(*separable, k=20, extra_ks=[200, 20])
    assert r.top1 == r.metrics["top1_k20"] and set(r.metrics) == {"top1_k20", "top1_k200"}
    assert knn_eval(*separable, k=200).top1 == r.metrics["top1_k200"]


def test_hungarian_matching() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    acc, matched = hungarian_accuracy(torch.tensor([2, 2, 0, 0, 1, 0]), labels)  # a relabelling, one error
    assert acc == pytest.approx(5 / 6) and matched.tolist() == [0, 0, 1, 1, 2, 1]


def test_fewshot_supports_are_nested_and_seeded() -> None:
    y = torch.arange(60) % 3
    one, five = support_indices(y, 1, seed=4), support_indices(y, 5, seed=4)
    assert set(one.tolist()) <= set(five.tolist()) and torch.bincount(y[five]).tolist() == [5, 5, 5]
    assert torch.equal(five, support_indices(y, 5, seed=4)) and not torch.equal(five, support_indices(y, 5, 5))


def test_degenerate_inputs_are_errors_or_defined_values() -> None:
    x, y = clusters(1, n_classes=5)  # one image per class
    fs = fewshot_eval(x, y, x, y, shots=(1, 5, 10), draws=2)
    assert fs.settings["shots"] == [1] and fs.settings["skipped_shots"] == [5, 10] and fs.top1 == 1.0
    with pytest.raises(ValueError, match="exceeds the smallest class"):
        fewshot_eval(x, y, x, y, shots=(5,))
    assert kmeans_eval(x, y).top1 == 1.0  # five points, five clusters
    y2 = torch.tensor([0, 1, 1, 1] * 5)
    for const in (torch.ones(20, 8), torch.zeros(20, 8)):  # constant features: defined values, no warnings
        km = kmeans_eval(const, y2)
        assert km.metrics["nmi"] == pytest.approx(0.0) and km.metrics["ari"] == pytest.approx(0.0)
        assert km.top1 == pytest.approx(0.75) and km.settings["clusters_found"] == 1
        assert fewshot_eval(const, y2, const, y2, shots=(1,)).top1 in (0.25, 0.75)
    single = torch.zeros(10, dtype=torch.long)
    for call in (lambda: kmeans_eval(torch.randn(10, 4), single),
                 lambda: fewshot_eval(torch.randn(10, 4), single, torch.randn(10, 4), single)):
        with pytest.raises(ValueError, match="single class"):
            call()
    nan = torch.randn(10, 4).index_fill_(0, torch.tensor([2]), math.nan)
    y3 = torch.arange(10) % 2
    with pytest.raises(ValueError, match="NaN"):
        kmeans_eval(nan, y3)
    with pytest.raises(ValueError, match="NaN"):
        fewshot_eval(nan, y3, nan, y3)
    with pytest.raises(ValueError, match="draws"):
        fewshot_eval(x, y, x, y, draws=0)


def test_registry_lists_protocols_and_finetune_skips_pixels(separable) -> None:
    assert set(FEATURE_PROTOCOLS + ["finetune"]) <= set(PROTOCOLS.names())
    with pytest.raises(ValueError, match="did you mean 'kmeans'"):
        run_protocols(*separable, ["kmean"], EvalConfig())
    assert PROTOCOLS.get("finetune")(ProtocolInputs(*separable), EvalConfig()) is None  # no network: not applicable
    assert "kmeans" in EvalConfig().protocols and "finetune" not in EvalConfig().protocols


def test_per_class_report_table_and_rows(separable, shuffled) -> None:
    assert per_class_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 3) == [0.5, 1.0, None]
    cfg = EvalConfig(protocols=["knn", "kmeans", "fewshot"], fewshot_draws=2)
    good = EncoderResult("ours", run_protocols(*separable, cfg.protocols, cfg))
    bad = EncoderResult("random", run_protocols(*shuffled, cfg.protocols, cfg))
    report = EvalReport("ckpt", "train", "test", [bad, good], classes=list("abcde"), baseline="random")
    diff = report.per_class_difference("ours", "knn")
    assert len(diff) == 5 and all(d > 0 for d in diff)
    rows = report.per_class_rows()
    assert len(rows) == 2 * 3 * 5 and rows[0]["class"] == "a" and rows[0]["baseline"] == "random"
    table = results_table(report.encoders, cfg.protocols)
    for title in ("k-NN k=20 top-1", "k-NN k=200 top-1", "k-means NMI", "k-means ARI", "5-shot top-1", " ± "):
        assert title in table
    metrics = metric_rows(report.encoders)
    assert {(r["protocol"], r["metric"]) for r in metrics} >= {("kmeans", "nmi"), ("fewshot", "top1_10shot_std")}
    d = report.to_dict()
    json.dumps(d)
    assert "features" not in d and d["classes"] == list("abcde")
    finetune_missing = EncoderResult("pixels", {})
    assert "–" in results_table([finetune_missing], ["finetune"])
    assert "other" in ProtocolResult("other", 0.5).describe()


def test_evaluate_keeps_features_networks_and_images_for_analysis(tiny_config, tmp_path) -> None:
    from synthsight.cli import main
    from synthsight.eval.run import PIXELS, RANDOM, evaluate
    from tests.conftest import TINY
    from tests.test_cli import _npz

    run = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(run)]) == 0
    data = str(_npz(tmp_path / "d.npz"))
    cfg = EvalConfig(data=data, test_data=data, protocols=["knn", "kmeans"], compare=["random", "pixels"], size=16)
    report = evaluate(run, cfg, progress=False, log=lambda _: None)
    names = [e.name for e in report.encoders]
    assert set(report.features) == set(names) and set(report.networks) == set(names) - {PIXELS}
    train_x, test_x = report.features[names[-1]]
    assert train_x.shape == (40, test_x.shape[1]) and len(report.test) == len(report.train) == 40
    assert report.baseline == RANDOM and report.classes == ["0", "1"]
    assert set(report.per_class[names[-1]]) == {"knn", "kmeans"}
    assert len(report.per_class_difference(names[-1], "knn")) == 2
    json.dumps(report.to_dict())

"""Feature extraction, weighted k-NN and the linear probe, on synthetic features with known answers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from synthsight.eval.features import extract_features
from synthsight.eval.knn import knn_eval, knn_predict
from synthsight.eval.linear import fit_logistic_regression, linear_eval, standardize, stratified_split
from synthsight.eval.result import ProtocolResult


def clusters(n_per_class: int, n_classes: int = 5, dim: int = 16, spread: float = 0.3, seed: int = 0):
    """Well separated Gaussian clusters: (features Tensor[n, dim], labels Tensor[n])."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


@pytest.fixture(scope="module")
def separable():
    return (*clusters(40, seed=0), *clusters(20, seed=1))


def test_separable_clusters_are_classified_perfectly(separable) -> None:
    knn = knn_eval(*separable)
    linear = linear_eval(*separable)
    assert knn.top1 >= 0.99 and linear.top1 >= 0.99
    assert (knn.n_train, knn.n_test) == (200, 100)
    assert linear.settings["selection"] == "validation" and len(linear.settings["val_top1"]) == 5


def test_shuffled_labels_give_chance(separable) -> None:
    train_x, train_y, test_x, test_y = separable
    g = torch.Generator().manual_seed(0)
    shuffled_train, shuffled_test = train_y[torch.randperm(200, generator=g)], test_y[torch.randperm(100, generator=g)]
    assert knn_eval(train_x, shuffled_train, test_x, shuffled_test).top1 < 0.4  # chance is 0.2
    assert linear_eval(train_x, shuffled_train, test_x, shuffled_test).top1 < 0.4


def test_knn_votes_are_weighted_by_similarity() -> None:
    # Two class-0 neighbours at cosine 0.8 and one class-1 neighbour at cosine 1.0.
    train_x = torch.tensor([[0.8, 0.6], [0.8, -0.6], [1.0, 0.0], [-1.0, 0.0]])
    train_y = torch.tensor([0, 0, 1, 2])
    test_x = torch.tensor([[1.0, 0.0]])
    assert knn_predict(train_x, train_y, test_x, k=3, temperature=0.07).item() == 1  # exp(1/T) dominates
    assert knn_predict(train_x, train_y, test_x, k=3, temperature=100.0).item() == 0  # ~majority vote
    assert knn_predict(train_x, train_y, test_x, k=3, temperature=1e-4).item() == 1  # no overflow


def test_knn_chunking_does_not_change_predictions(separable) -> None:
    train_x, train_y, test_x, _ = separable
    assert torch.equal(knn_predict(train_x, train_y, test_x, chunk_size=7), knn_predict(train_x, train_y, test_x))


def test_descriptions_spell_out_the_protocol(separable) -> None:
    knn = knn_eval(*separable)
    assert knn.describe().startswith("k-NN, cosine similarity, k=20, weighted vote exp(s/0.07), 200 train / 100 test")
    text = linear_eval(*separable).describe()
    assert "logistic regression" in text and "10% held-out validation split" in text and "200 train" in text
    d = knn.to_dict()
    assert set(d) == {"protocol", "top1", "settings", "n_train", "n_test", "metrics", "per_class", "description"}
    json.dumps(d)
    assert "other" in ProtocolResult("other", 0.5, {"a": 1}, 1, 1).describe()


def test_single_class_is_a_clear_error() -> None:
    x, y = torch.randn(10, 4), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="single class"):
        knn_eval(x, y, x, y)
    with pytest.raises(ValueError, match="single class"):
        linear_eval(x, y, x, y)


def test_one_image_per_class_and_k_larger_than_train() -> None:
    x, y = clusters(1, n_classes=5)
    with pytest.warns(UserWarning, match="using k=5"):
        knn = knn_eval(x, y, x, y)
    assert knn.settings["k"] == 5 and knn.settings["k_requested"] == 20 and "k=5" in knn.describe()
    linear = linear_eval(x, y, x, y)
    assert linear.settings["selection"].startswith("strongest in grid") and 0.0 <= linear.top1 <= 1.0
    assert "weight decay 0.01" in linear.describe()


def test_constant_features_give_a_defined_value() -> None:
    y = torch.tensor([0, 1, 1, 1] * 5)
    for x in (torch.ones(20, 8), torch.zeros(20, 8)):
        assert 0.0 <= knn_eval(x, y, x, y).top1 <= 1.0
        assert linear_eval(x, y, x, y).top1 == pytest.approx(0.75)  # only the bias can learn: the majority


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "train_x": a["train_x"].clone().index_fill_(0, torch.tensor([3]), float("nan"))}, "NaN"),
        (lambda a: {**a, "test_x": a["test_x"][:, :3]}, "feature dims"),
        (lambda a: {**a, "train_y": a["train_y"][:-1]}, "one label per row"),
        (lambda a: {**a, "train_y": a["train_y"].float()}, "integer class indices"),
        (lambda a: {**a, "test_y": a["test_y"] - 5}, "negative labels"),
        (lambda a: {**a, "train_x": a["train_x"][0]}, r"Tensor\[N, D\]"),
    ],
)
def test_bad_inputs_are_clear_errors(separable, change, message) -> None:
    args = dict(zip(("train_x", "train_y", "test_x", "test_y"), separable))
    for protocol in (knn_eval, linear_eval):
        with pytest.raises(ValueError, match=message):
            protocol(**change(args))


def test_bad_settings_are_clear_errors(separable) -> None:
    with pytest.raises(ValueError, match="k must be"):
        knn_eval(*separable, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_eval(*separable, temperature=0)
    with pytest.raises(ValueError, match="val_fraction"):
        linear_eval(*separable, val_fraction=1.5)
    with pytest.raises(ValueError, match="weight_decays"):
        linear_eval(*separable, weight_decays=[])


def test_linear_helpers(separable) -> None:
    train_x, train_y, test_x, _ = separable
    fit, held = stratified_split(train_y, 0.1, seed=0)
    assert torch.bincount(train_y[held]).tolist() == [4] * 5 and len(fit) + len(held) == 200
    assert set(fit.tolist()).isdisjoint(held.tolist())
    x, xt = standardize(train_x, test_x)
    assert torch.allclose(x.mean(0), torch.zeros(16), atol=1e-5) and xt.shape == test_x.shape
    w, b = fit_logistic_regression(x, train_y, 5, weight_decay=1e-3)
    assert w.shape == (5, 16) and b.shape == (5,)
    fixed = linear_eval(*separable, weight_decays=[1e-4])
    assert fixed.settings["selection"] == "fixed" and fixed.settings["weight_decay"] == 1e-4


class TinyNet(nn.Module):
    """conv -> batch norm -> ReLU -> global average pool: features Tensor[B, 8]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (37, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_extract_features_shape_and_batch_independence(images) -> None:
    torch.manual_seed(0)
    net = TinyNet()
    net.body[1].running_mean.uniform_(-1, 1)  # eval mode must use these, not the batch's statistics
    net.train()
    full = extract_features(net, images, batch_size=64, amp=False)
    assert full.shape == (37, 8) and full.dtype == torch.float32
    assert net.training  # mode restored
    assert torch.allclose(full, extract_features(net, images, batch_size=5, amp=False), atol=1e-5)
    bf16 = extract_features(net, images, batch_size=5, amp=True, progress=True)
    assert bf16.dtype == torch.float32 and torch.allclose(full, bf16, atol=0.05, rtol=0.05)
    assert torch.allclose(bf16, extract_features(net, images, batch_size=37, amp=True), atol=0.05, rtol=0.05)


def test_features_feed_the_probes(images) -> None:
    feats = extract_features(TinyNet(), images, amp=False)  # made under inference_mode: the probe still trains
    y = torch.arange(37) % 3
    assert 0.0 <= linear_eval(feats, y, feats, y).top1 <= 1.0


def test_extract_features_rejects_bad_inputs(images) -> None:
    with pytest.raises(ValueError, match=r"Tensor\[N, 3, H, W\]"):
        extract_features(TinyNet(), images[:, :1])
    with pytest.raises(ValueError, match="num_classes=0"):
        extract_features(nn.Conv2d(3, 4, 3), images)


def test_knn_normalises_the_queries_as_well_as_the_bank() -> None:
    """Cosine similarity: a query's length must not change its vote. A short query would flatten exp(s/T)."""
    train_x = torch.tensor([[1.0, 0.14], [0.9, 0.44], [0.9, -0.44]])  # one class-0 neighbour close, two class-1
    train_y = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_predict(train_x, train_y, query, k=3, temperature=0.07).item() == 0
    assert knn_predict(train_x, train_y, 0.05 * query, k=3, temperature=0.07).item() == 0
    assert knn_predict(train_x, train_y, 20.0 * query, k=3, temperature=0.07).item() == 0

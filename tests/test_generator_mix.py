import pytest
import torch

from synthsight.generators.base import image_rng
from synthsight.registry import GENERATORS


def test_mixup_components_weights_and_labels():
    gen = GENERATORS.create("mix", variant="mixup", size=32, k=6)
    p = gen.sample_params(image_rng(0, 5, gen.salt))
    assert len(p["components"]) == 6
    assert p["mix_weights"].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert int(p["label"]) == int(p["mix_labels"][p["mix_weights"].argmax()])
    assert set(p["mix_labels"].tolist()) <= set(range(gen.num_classes))


def test_mixup_image_is_the_weighted_sum_of_its_components():
    gen = GENERATORS.create("mix", variant="mixup", size=32, k=3)
    p = gen.sample_params(image_rng(1, 0, gen.salt))
    image = gen.render([p], torch.device("cpu"))[0]
    parts = [gen.children[c["family"]].render([c["params"]], torch.device("cpu"))[0] for c in p["components"]]
    expected = sum(w * x for w, x in zip(p["mix_weights"], parts)).clamp(0, 1)
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)


def test_uniform_mix_follows_the_weights():
    gen = GENERATORS.create("mix", size=16, families=("dead_leaves/squares", "spectrum/gray"), weights=(0.0, 1.0))
    _, labels = gen.generate_with_labels(range(20), seed=0)
    assert labels.tolist() == [1] * 20  # every image from the second family (offset 1)


def test_bad_mix_configs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator"):
        GENERATORS.create("mix", families=("dead_leafs",))
    with pytest.raises(ValueError, match="weights"):
        GENERATORS.create("mix", families=("spectrum",), weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="itself"):
        GENERATORS.create("mix", families=("mix",))


def test_mix_of_stylegan_children_uses_each_images_network():
    """Image i of a mix renders a stylegan_random component with that child's network i // 400, not network 0."""
    gen = GENERATORS.create("mix", size=16, families=("stylegan_random/oriented", "stylegan_random/sparse"))
    cpu = torch.device("cpu")
    for index in (3 * 400 + 5, 7 * 400):
        image = gen.generate([index], seed=0)[0]
        c = gen.sample_params(image_rng(0, index, gen.salt))["components"][0]  # the same draws, network 0
        child = gen.children[c["family"]]
        own = child.render([{**c["params"], "network": torch.tensor(index // 400)}], cpu)[0]
        first = child.render([{**c["params"], "network": torch.tensor(0)}], cpu)[0]
        assert torch.equal(image, own)
        assert not torch.allclose(image, first, atol=1e-3)
    # a batch across networks gives the images rendered one by one
    indices = [5, 405, 805, 1205]
    torch.testing.assert_close(gen.generate(indices, seed=1), torch.cat([gen.generate([i], seed=1) for i in indices]),
                               atol=1e-5, rtol=0)


def test_shared_labels_give_one_category_one_class_in_every_look():
    looks = ("fractal_ifs/fractaldb:num_classes=10", "fractal_ifs/fractaldb:num_classes=10,style=anderson")
    gen = GENERATORS.create("mix", size=16, families=looks, shared_labels=True)
    assert gen.num_classes == 10 and gen.config()["shared_labels"] is True
    params = [gen.image_params(0, i) for i in range(40)]
    by_look = {j: {int(p["label"]) for p in params if p["components"][0]["family"] == j} for j in (0, 1)}
    assert by_look[0] and by_look[1] and by_look[0] | by_look[1] <= set(range(10))  # no offset for the second look
    for p in params:  # the class is the component's own category: the same system in either look
        c = p["components"][0]
        assert int(p["label"]) == int(c["params"]["label"])
    images, labels = gen.generate_with_labels(range(8), seed=0)
    assert images.shape == (8, 3, 16, 16) and int(labels.max()) < 10
    offset = GENERATORS.create("mix", size=16, families=looks)
    assert offset.num_classes == 20


def test_shared_labels_need_the_same_categories_everywhere():
    with pytest.raises(ValueError, match="shared_labels needs families with categories"):
        GENERATORS.create("mix", families=("fractal_ifs/fractaldb:num_classes=10", "spectrum/gray"), shared_labels=True)
    ten_and_twenty = ("fractal_ifs/fractaldb:num_classes=10", "fractal_ifs/fractaldb:num_classes=20")
    with pytest.raises(ValueError, match="same num_classes"):
        GENERATORS.create("mix", families=ten_and_twenty, shared_labels=True)

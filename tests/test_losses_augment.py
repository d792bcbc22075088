import math

import pytest
import torch

from synthsight.augment.ops import color_jitter, random_grayscale, random_resized_crop
from synthsight.augment.views import ViewConfig, make_view
from synthsight.losses.ntxent import nt_xent
from synthsight.schedules import warmup_cosine


def test_nt_xent_matches_hand_computation_for_two_pairs():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    # anchor 0 (z1[0]): positive z2[0] sim 1; negatives z1[1] sim 0, z2[1] sim 0
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert nt_xent(z1, z2, t).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_is_low_for_aligned_and_high_for_random_pairs():
    torch.manual_seed(0)
    z = torch.randn(64, 32)
    aligned = nt_xent(z, z + 0.01 * torch.randn_like(z), 0.1)
    shuffled = nt_xent(z, torch.randn(64, 32), 0.1)
    assert aligned < 0.5 < math.log(127) - 1 < shuffled


def test_nt_xent_rejects_bad_shapes():
    with pytest.raises(ValueError, match="two"):
        nt_xent(torch.randn(4, 8), torch.randn(5, 8))


def test_augmentations_keep_shape_range_and_are_seeded():
    x = torch.rand(6, 3, 40, 40)
    cfg = ViewConfig(size=24)
    a = make_view(x, torch.Generator().manual_seed(1), cfg)
    b = make_view(x, torch.Generator().manual_seed(1), cfg)
    c = make_view(x, torch.Generator().manual_seed(2), cfg)
    assert a.shape == (6, 3, 24, 24)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_full_crop_without_flip_is_identity_resize():
    x = torch.rand(2, 3, 16, 16)
    y = random_resized_crop(x, 16, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(x, y, atol=1e-5)


def test_grayscale_p1_makes_channels_equal_and_jitter_p0_is_identity():
    x = torch.rand(3, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_grayscale(x, g, p=1.0)
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
    assert torch.allclose(color_jitter(x, g, p=0.0), x, atol=1e-5)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 1.0, warmup_steps=10, final=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("crops", ["views", "multicrop"])
def test_views_ignore_the_train_steps_autocast(crops):
    """Views are data: inside bf16 autocast they come out in float32 and equal to the views made outside it."""
    from synthsight.augment.multicrop import MultiCropConfig, multi_crop

    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def views():
        g = torch.Generator().manual_seed(1)
        if crops == "views":
            return [make_view(images, g, ViewConfig(size=16))]
        cfg = MultiCropConfig(global_size=16, local_size=8, local_crops=1, blur=True)
        return multi_crop(images, g, cfg, ViewConfig(size=16)).views()

    plain = views()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = views()
    for a, b in zip(plain, mixed):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_blur_view_smooths_only_when_asked():
    from synthsight.augment.rng import PerImageRandom

    images = torch.rand(8, 3, 32, 32)

    def view(**options):
        return make_view(images, PerImageRandom.for_images(0, 0, range(8)), ViewConfig(size=32, **options))

    def roughness(x):  # mean absolute difference between horizontal neighbours
        return float((x[..., 1:] - x[..., :-1]).abs().mean())

    def crop_jitter_grey(x, g, cfg):  # the view before the blur option existed
        x = random_resized_crop(x, cfg.size, g, scale=(cfg.crop_scale_min, 1.0), flip_p=cfg.flip_p)
        x = color_jitter(x, g, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p)
        return random_grayscale(x, g, p=cfg.grayscale_p)

    cfg, g_old, g_new = ViewConfig(size=32), *(PerImageRandom.for_images(0, 0, range(8)) for _ in range(2))
    old = [crop_jitter_grey(images, g_old, cfg) for _ in range(2)]
    new = [make_view(images, g_new, cfg) for _ in range(2)]  # blur off draws nothing: later views unchanged too
    assert all(torch.equal(a, b) for a, b in zip(old, new))
    plain = view()
    blurred = view(blur_p=1.0, blur_sigma=[1.0, 2.0])
    assert roughness(blurred) < 0.6 * roughness(plain)
    assert torch.equal(blurred, view(blur_p=1.0, blur_sigma=[1.0, 2.0]))  # a pure function of seed, step, image

"""Contract tests for every registered generator family and variant, the sharded stream, and the I/O helpers.

Small images (32 px) keep the whole file fast on a 2-core CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from synthsight.generators import GENERATORS, create_generator
from synthsight.generators.base import image_rng
from synthsight.generators.dead_leaves import KINDS, DeadLeaves
from synthsight.generators.io import pixel_sha256, save_grid, to_uint8, write_dataset
from synthsight.generators.stream import SyntheticStream

SIZE = 32
CASES = [(family, variant) for family in GENERATORS.names() for variant in GENERATORS.get(family).variants]
IDS = [f"{f}-{v}" for f, v in CASES]


@pytest.fixture(scope="module")
def batches() -> dict[tuple[str, str], torch.Tensor]:
    """Images 0..63 of seed 0 for every family/variant, rendered once and shared by the tests."""
    return {(f, v): create_generator(f, v, SIZE).generate(range(64), seed=0) for f, v in CASES}


def test_registry_has_the_families() -> None:
    assert {"dead_leaves", "spectrum"} <= set(GENERATORS.names())
    for family in GENERATORS.names():
        cls = GENERATORS.get(family)
        assert cls.variants, f"{family} declares no variants"
        assert create_generator(family, size=SIZE).variant == cls.variants[0]  # first variant is the default


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_shape_dtype_range(batches, family: str, variant: str) -> None:
    images = batches[family, variant]
    assert images.shape == (64, 3, SIZE, SIZE)
    assert images.dtype == torch.float32
    assert torch.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    per_image_std = images.flatten(1).std(dim=1)
    assert (per_image_std > 1e-3).all(), "some image is constant"


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_determinism(batches, family: str, variant: str) -> None:
    gen = create_generator(family, variant, SIZE)
    again = gen.generate(range(8), seed=0)
    assert torch.equal(again, batches[family, variant][:8])  # bit-identical
    other = gen.generate(range(8), seed=1)
    assert all(not torch.equal(other[i], again[i]) for i in range(8))
    # different images within a stream, too
    assert all(not torch.equal(again[i], again[i + 1]) for i in range(7))


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_image_independent_of_batch(batches, family: str, variant: str) -> None:
    gen = create_generator(family, variant, SIZE)
    full = batches[family, variant]  # batch of 64
    seven = gen.generate(range(7), seed=0)
    assert torch.equal(seven, full[:7])
    for i in (0, 5, 63):
        assert torch.equal(gen.generate([i], seed=0)[0], full[i]), f"image {i} differs when rendered alone"
    picked = [63, 2, 40]
    assert torch.equal(gen.generate(picked, seed=0), full[picked])


def _tensors(params):
    """Every leaf of a (possibly nested) parameter structure; non-tensor leaves fail the contract."""
    if isinstance(params, dict):
        return [t for v in params.values() for t in _tensors(v)]
    if isinstance(params, (list, tuple)):
        return [t for v in params for t in _tensors(v)]
    if isinstance(params, int):  # plain indices (e.g. which family a mix component comes from)
        return []
    assert isinstance(params, torch.Tensor), f"parameter leaf of type {type(params).__name__}"
    return [params]


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_params_are_cpu_tensors(family: str, variant: str) -> None:
    gen = create_generator(family, variant, SIZE)
    params = gen.sample_params(image_rng(0, 0, gen.salt))
    assert params and all(t.device.type == "cpu" for t in _tensors(params))
    assert gen.render([params], torch.device("cpu")).shape == (1, 3, SIZE, SIZE)
    cfg = gen.config()
    assert cfg["family"] == family and cfg["variant"] == variant and cfg["size"] == SIZE
    json.dumps(cfg)  # goes into manifests


@pytest.mark.parametrize("family,variant", CASES, ids=IDS)
def test_whole_batch_path_agrees(batches, family: str, variant: str) -> None:
    """The whole-batch code path (taken on GPUs) gives the images of the per-image CPU path, up to rounding."""
    gen = create_generator(family, variant, SIZE)
    if not hasattr(gen, "_render"):
        pytest.skip(f"{family} has a single rendering path")
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(16)]
    diff = (gen._render(params, torch.device("cpu"), False) - batches[family, variant][:16]).abs()
    assert diff.mean() < 1e-4 and diff.max() < 0.05


def test_same_images_on_one_and_two_threads() -> None:
    before = torch.get_num_threads()
    try:
        for family, size in (("dead_leaves", 128), ("spectrum", 256)):
            gen = create_generator(family, size=size)
            torch.set_num_threads(1)
            one = gen.generate(range(3), seed=0)
            torch.set_num_threads(2)
            assert torch.equal(one, gen.generate(range(3), seed=0))
    finally:
        torch.set_num_threads(before)


def test_non_power_of_two_size() -> None:
    for family, variant in CASES:
        images = create_generator(family, variant, 36).generate([0, 1], seed=3)
        assert images.shape == (2, 3, 36, 36) and 0 <= images.min() and images.max() <= 1
        alone = create_generator(family, variant, 36).generate([1], seed=3)
        assert torch.equal(alone[0], images[1])


# ------------------------------------------------------------------ dead leaves specifics
@pytest.mark.parametrize("variant", DeadLeaves.variants)
def test_dead_leaves_canvas_fully_covered(variant: str) -> None:
    gen = DeadLeaves(variant, SIZE)
    params = [gen.sample_params(image_rng(0, i, gen.salt)) for i in range(16)]
    labels = gen.label_map(params)
    assert labels.shape == (16, SIZE, SIZE) and labels.dtype == torch.int32
    assert (labels >= 0).all() and (labels < torch.iinfo(torch.int32).max).all()
    # many small shapes and a few large ones are visible
    visible = [len(torch.unique(lab)) for lab in labels]
    assert min(visible) >= 5


def test_dead_leaves_extra_blocks_cover_the_rest() -> None:
    """Tiny blocks force many 'add more shapes' rounds; the result equals drawing all shapes up front."""
    small = DeadLeaves("mixed", 40, first_block=16, next_block=8)
    big = DeadLeaves("mixed", 40, first_block=8192)
    p_small = [small.sample_params(image_rng(0, i, small.salt)) for i in range(4)]
    p_big = [big.sample_params(image_rng(0, i, big.salt)) for i in range(4)]
    labels = small.label_map(p_small)
    assert (labels >= 0).all() and (labels < torch.iinfo(torch.int32).max).all()
    assert labels.max() >= 16, "no image needed the extra blocks"
    assert torch.equal(labels, big.label_map(p_big))


def test_dead_leaves_flat_colours_follow_labels() -> None:
    gen = DeadLeaves("mixed", SIZE)
    params = [gen.sample_params(image_rng(2, i, gen.salt)) for i in range(3)]
    images, labels = gen.render(params, torch.device("cpu")), gen.label_map(params)
    for i in range(3):
        colours = params[i]["colour"]
        if labels[i].max() >= colours.shape[0]:
            continue  # colour of an extra-block shape is not in the params
        expected = colours[labels[i].long()].permute(2, 0, 1)
        assert torch.equal(images[i], expected)


def _brute_force_labels(gen: DeadLeaves, shapes: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reference rasteriser: test every shape at every pixel centre, keep the first hit."""
    size = gen.size
    geo = gen._geometry(shapes)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1, 1), ys.reshape(-1, 1, 1)
    vx, vy = geo["vx"].unsqueeze(0), geo["vy"].unsqueeze(0)
    ex, ey = torch.roll(vx, -1, dims=2) - vx, torch.roll(vy, -1, dims=2) - vy
    in_poly = ((px - vx) * ey - (py - vy) * ex <= 0).all(2)
    d2 = (px[..., 0] - geo["cx"]) ** 2 + (py[..., 0] - geo["cy"]) ** 2
    in_circle = d2 <= geo["r"] ** 2
    inside = torch.where(shapes["kind"] == 0, in_circle, in_poly)  # [pixels, shapes]
    first = torch.where(inside.any(1), inside.float().argmax(1), torch.iinfo(torch.int32).max)
    return first.view(size, size).int()


def test_dead_leaves_rasteriser_matches_brute_force() -> None:
    gen = DeadLeaves("mixed", 48, rmin=0.05, rmax=0.5)
    for seed in range(3):
        shapes = gen._draw_shapes(torch.Generator().manual_seed(seed), 60)
        got = gen._rasterise([shapes], torch.device("cpu"))[0]
        want = _brute_force_labels(gen, shapes)
        agree = (got == want).float().mean().item()
        assert agree > 0.998, f"span rasteriser disagrees with the per-pixel test on {1 - agree:.2%} of pixels"
        assert set(shapes["kind"].tolist()) == set(range(len(KINDS)))


def test_dead_leaves_radius_distribution() -> None:
    gen = DeadLeaves("squares", 64)
    radius = gen._draw_shapes(torch.Generator().manual_seed(0), 20000)["radius"]
    assert radius.min() >= 0.03 - 1e-6 and radius.max() <= 1.0
    # density r^-3 on [a, b]: P(r > x) = (x^-2 - b^-2) / (a^-2 - b^-2)
    for x in (0.06, 0.12):
        expected = (x**-2 - 1.0) / (0.03**-2 - 1.0)
        assert abs((radius > x).float().mean().item() - expected) < 0.01


# ------------------------------------------------------------------ names
def test_unknown_family_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        create_generator("dead_leave")
    message = str(err.value)
    assert "dead_leave" in message and all(name in message for name in GENERATORS.names())


@pytest.mark.parametrize("family", ["dead_leaves", "spectrum"])
def test_unknown_variant_lists_valid_variants(family: str) -> None:
    with pytest.raises(ValueError) as err:
        create_generator(family, "nonsense", SIZE)
    assert all(v in str(err.value) for v in GENERATORS.get(family).variants)


def test_bad_size_rejected() -> None:
    with pytest.raises(ValueError):
        create_generator("spectrum", size=4)


# ------------------------------------------------------------------ stream
def test_stream_ranks_are_disjoint_and_cover_the_global_batch() -> None:
    gen = create_generator("spectrum", size=16)
    world, batch = 3, 4
    single = SyntheticStream([gen], seed=5, batch_size=batch * world, num_batches=2)
    for b, (images, indices) in enumerate(single):
        seen = []
        for rank in range(world):
            shard = SyntheticStream([gen], seed=5, batch_size=batch, rank=rank, world_size=world, start_batch=b)
            rank_images, rank_indices = next(iter(shard))
            seen += rank_indices.tolist()
            assert torch.equal(rank_images, images[rank * batch : (rank + 1) * batch])
        assert sorted(seen) == list(range(b * batch * world, (b + 1) * batch * world)) == indices.tolist()


def test_stream_mixes_two_families() -> None:
    gens = [create_generator("dead_leaves", size=16), create_generator("spectrum", size=16)]
    stream = SyntheticStream(gens, seed=1, batch_size=32, num_batches=1)
    images, indices = next(iter(stream))
    families = [stream.family_of(i) for i in indices.tolist()]
    assert set(families) == {0, 1}
    for f, gen in enumerate(gens):
        rows = [k for k, fam in enumerate(families) if fam == f]
        assert torch.equal(images[rows], gen.generate([indices[k].item() for k in rows], seed=1))


def test_worker_sharded_dataloader_matches_single_process() -> None:
    gens = [create_generator("dead_leaves", size=16), create_generator("spectrum", size=16)]
    stream = SyntheticStream(gens, seed=2, batch_size=8, num_batches=4)
    plain = list(DataLoader(stream, batch_size=None, num_workers=0))
    workers = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(plain) == len(workers) == 4
    for (a, ia), (b, ib) in zip(plain, workers):
        assert torch.equal(ia, ib) and torch.equal(a, b)


# ------------------------------------------------------------------ io
def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0 / 255, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 1, 255, 255]
    assert to_uint8(x).dtype == torch.uint8


def test_save_grid_writes_png(tmp_path) -> None:
    images = torch.rand(6, 3, 16, 16)
    path = save_grid(images, tmp_path / "sub" / "grid.png")
    with Image.open(path) as im:
        assert im.size == (3 * 18 + 2, 2 * 18 + 2) and im.mode == "RGB"
        tile = np.asarray(im)[2:18, 2:18]
    assert np.array_equal(tile, to_uint8(images[0]).permute(1, 2, 0).numpy())
    path = save_grid(images, tmp_path / "row.png", nrow=6)
    with Image.open(path) as im:
        assert im.size == (6 * 18 + 2, 18 + 2)


def test_write_dataset_files_and_manifest(tmp_path) -> None:
    gen = create_generator("spectrum", size=16)
    manifest_path = write_dataset(gen, n=10, seed=3, out_dir=tmp_path / "ds", batch_size=4, progress=False)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["count"] == 10 and manifest["seed"] == 3 and manifest["complete"] is True
    assert manifest["generator"] == gen.config()
    files = sorted(p.name for p in (tmp_path / "ds").glob("*.png"))
    assert files == [f"{i:08d}.png" for i in range(10)]
    images = to_uint8(gen.generate(range(10), seed=3))
    for entry in manifest["images"]:
        with Image.open(tmp_path / "ds" / entry["file"]) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert pixel_sha256(pixels) == entry["sha256"] == pixel_sha256(images[entry["index"]])


def test_write_dataset_parallel_matches_serial(tmp_path) -> None:
    gen = create_generator("dead_leaves", size=16)
    serial = write_dataset(gen, n=12, seed=0, out_dir=tmp_path / "a", batch_size=3, progress=False)
    parallel = write_dataset(gen, n=12, seed=0, out_dir=tmp_path / "b", batch_size=3, workers=2, progress=False)
    assert json.loads(serial.read_text()) == json.loads(parallel.read_text())


def test_write_dataset_refuses_a_different_run(tmp_path) -> None:
    gen = create_generator("spectrum", size=16)
    out = tmp_path / "ds"
    write_dataset(gen, n=3, seed=0, out_dir=out, progress=False)
    write_dataset(gen, n=3, seed=0, out_dir=out, progress=False)  # the same run may be written again
    with pytest.raises(ValueError, match="different data set") as err:
        write_dataset(gen, n=3, seed=1, out_dir=out, progress=False)
    assert str(out) in str(err.value) and "new directory" in str(err.value)
    with pytest.raises(ValueError, match="different data set"):
        write_dataset(create_generator("spectrum", "gray", 16), n=3, seed=0, out_dir=out, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a data set")
    with pytest.raises(ValueError, match=str(other).replace("\\", "\\\\")):
        write_dataset(gen, n=3, seed=0, out_dir=other, progress=False)


@pytest.mark.parametrize("family", ["dead_leaves", "spectrum"])
def test_empty_index_list(family: str) -> None:
    assert create_generator(family, size=16).generate([], seed=0).shape == (0, 3, 16, 16)

"""The real-image reference stream (data.real): determinism, sharding, resume, and a tiny pretrain on an .npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from synthsight.config import ConfigError, EvalConfig
from synthsight.eval.real_stream import RealImageStream
from synthsight.eval.run import PRETRAINED_REAL, evaluate
from synthsight.provenance import verify_provenance
from synthsight.registry import METHODS
from synthsight.runs import pretrain_run
from synthsight.train.build import build_stream

N = 12


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    """12 distinct grey 10 x 10 images (image k is filled with 20 k) in 3 classes."""
    images = np.stack([np.full((10, 10), 20 * k, np.uint8) for k in range(N)])
    path = tmp_path / "tiny.npz"
    np.savez(path, images=images, labels=np.arange(N) % 3)
    return path


def _ids(images: torch.Tensor) -> list[int]:
    """Which data-set image each rendered image is (its constant grey level / 20)."""
    return [round(float(x) * 255 / 20) for x in images[:, 0, 0, 0]]


def test_epochs_are_seeded_permutations_and_grey_is_replicated(npz: Path) -> None:
    stream = RealImageStream.from_spec(str(npz), size=8, seed=0, batch_size=4)
    assert stream.images.shape == (N, 1, 8, 8)  # grey kept once, replicated when rendered
    images = stream.render(range(3 * N))
    assert images.shape == (3 * N, 3, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 2]) and 0 <= float(images.min()) <= float(images.max()) <= 1
    ids = _ids(images)
    for epoch in range(3):
        assert sorted(ids[epoch * N:(epoch + 1) * N]) == list(range(N))  # every image once per epoch
    assert ids[:N] != ids[N:2 * N]  # a fresh order each epoch
    again = RealImageStream.from_spec(str(npz), size=8, seed=0, batch_size=4)
    assert torch.equal(again.render([5, 30, 2]), images[[5, 30, 2]])  # a pure function of (seed, index)
    other = RealImageStream.from_spec(str(npz), size=8, seed=1, batch_size=4)
    assert _ids(other.render(range(N))) != ids[:N]


def test_ranks_and_workers_split_the_same_stream(npz: Path) -> None:
    def batches(**kw) -> list[torch.Tensor]:
        stream = RealImageStream.from_spec(str(npz), size=8, seed=0, num_batches=4, **kw)
        return [idx for _, idx in stream]

    whole = torch.cat(batches(batch_size=6))
    r0, r1 = torch.cat(batches(batch_size=3, rank=0, world_size=2)), torch.cat(batches(batch_size=3, rank=1,
                                                                                          world_size=2))
    assert not set(r0.tolist()) & set(r1.tolist())
    assert sorted(r0.tolist() + r1.tolist()) == whole.tolist()[:24]
    stream = RealImageStream.from_spec(str(npz), size=8, seed=0, batch_size=6, num_batches=4)
    loaded = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert sorted(torch.cat([i for _, i in loaded]).tolist()) == whole.tolist()
    for images, indices in loaded:
        assert torch.equal(images, stream.render(indices.tolist()))


def test_start_batch_resumes_exactly(npz: Path) -> None:
    full = list(RealImageStream.from_spec(str(npz), size=8, seed=3, batch_size=5, num_batches=6))
    resumed = list(RealImageStream.from_spec(str(npz), size=8, seed=3, batch_size=5, start_batch=4, num_batches=2))
    for (a, ia), (b, ib) in zip(full[4:], resumed, strict=True):
        assert torch.equal(ia, ib) and torch.equal(a, b)


def test_tiny_pretrain_on_real_images_records_it(npz: Path, tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(f"data.real={npz}", "trainer.steps=3", "trainer.checkpoint_every=3")
    stream = build_stream(cfg)
    assert isinstance(stream, RealImageStream) and stream.size == cfg.data.render_size
    run = tmp_path / "run"
    result = pretrain_run(cfg, run, progress=False)
    assert result.steps == 3
    record = json.loads((run / "provenance.json").read_text())
    assert record["data"]["real"] == str(npz) and record["data"]["generators"] == []
    assert "only real images" in record["data"]["split"] and "synthetic images, no other" not in record["data"]["split"]
    assert all(e["family"].startswith(f"real:{npz}#") for e in record["sample"]["images"])
    assert json.loads((run / "train_summary.json").read_text())["real_images_seen"] == 3 * cfg.trainer.batch_size
    report = verify_provenance(run)
    assert report.passed, report.summary()
    ev = evaluate(run, EvalConfig(data=str(npz), test_data=str(npz), protocols=["knn"], compare=[], knn_k=3,
                                  size=cfg.views.size), progress=False, log=lambda _: None)
    assert ev.encoders[-1].name == PRETRAINED_REAL.format(real=str(npz))


@pytest.mark.parametrize("method", [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_labels", False)
                                    and not getattr(METHODS.get(n), "partial_labels", False)])
def test_labelled_methods_refuse_real_images(npz: Path, tiny_config, method) -> None:
    cfg = tiny_config(f"data.real={npz}", f"method={method}")
    with pytest.raises(ConfigError, match="without labels"):
        build_stream(cfg)


def test_the_labelled_methods_exist() -> None:
    assert {"supcon", "ce"} <= {n for n in METHODS.names() if getattr(METHODS.get(n), "needs_labels", False)}


def test_empty_real_spec_is_a_config_error(tiny_config) -> None:
    with pytest.raises(ConfigError, match="data.real is empty"):
        tiny_config("data.real=' '")


def _image_folder(root: Path, corrupt: bool = False) -> Path:
    """2 classes x 3 PNGs, image k a constant colour of 20 k; with `corrupt`, one unreadable file more."""
    from PIL import Image

    for k in range(6):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 12, 3), 20 * k, np.uint8)).save(root / f"c{k % 2}" / f"{k}.png")
    if corrupt:
        (root / "c1" / "broken.png").write_bytes(b"not a png")
    return root


def test_a_folder_is_streamed_image_by_image_with_the_pixels_evaluation_reads(tmp_path: Path, monkeypatch) -> None:
    from synthsight.eval import image_folder
    from synthsight.eval.data import DatasetError, load_dataset

    opened: list[Path] = []
    decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda path, size: opened.append(path) or decode(path, size))
    root = _image_folder(tmp_path / "folder")
    stream = RealImageStream.from_spec(str(root), size=8, seed=0, batch_size=2, num_batches=3)
    assert isinstance(stream.images, image_folder.ImageFolder) and stream.num_images == 6 and opened == []
    images, indices = next(iter(stream))
    assert len(opened) == 2 and images.shape == (2, 3, 8, 8)  # only the images of that batch were decoded
    eager = load_dataset(str(root), size=8)
    rows = [stream.dataset_index(i) for i in range(12)]
    torch.testing.assert_close(stream.render(range(12)), eager.images[rows].float() / 255, rtol=0, atol=0)

    broken = RealImageStream.from_spec(str(_image_folder(tmp_path / "broken", corrupt=True)), size=8, seed=0,
                                       batch_size=2)
    assert broken.num_images == 7  # listed without complaint: a bad file is reported when the stream reaches it
    bad = next(i for i in range(7) if broken.images.files[broken.dataset_index(i)].name == "broken.png")
    broken.render([i for i in range(7) if i != bad])
    with pytest.raises(DatasetError, match=r"broken\.png"):
        broken.render([bad])

"""data.pool: a finite data set of the stream's first N images, a fresh order every epoch, rendered once."""

import pytest
import torch

from synthsight.config import ConfigError
from synthsight.generators import create_generator
from synthsight.generators.pool import PooledStream
from synthsight.generators.stream import SyntheticStream
from synthsight.train.build import build_stream
from tests.conftest import assert_resume_is_bit_exact


def pooled(size=12, batch=4, **kwargs):
    gens = [create_generator("fractal_ifs/svd", size=16), create_generator("contours/rcdb", size=16)]
    return PooledStream(SyntheticStream(gens, seed=3, batch_size=batch, with_labels=True, **kwargs), size)


def test_every_epoch_visits_each_pool_image_once_in_a_new_order():
    pool = pooled(size=12, batch=4)
    batches = iter(pool)
    items = [next(batches)[1] for _ in range(6)]  # two epochs of 3 batches
    first, second = torch.cat(items[:3]), torch.cat(items[3:])
    assert sorted(first.tolist()) == list(range(12)) == sorted(second.tolist())
    assert not torch.equal(first, second)


def test_pool_images_are_the_streams_images_in_8_bits_rendered_once():
    pool = pooled(size=12, batch=4)
    stream_images, stream_labels = pool.stream.render_with_labels(range(12))
    for _ in range(2):  # two epochs
        for images, items, labels in [batch for batch, _ in zip(pool, range(3))]:
            assert (images - stream_images[items]).abs().max() <= 0.5 / 255 + 1e-6
            assert torch.equal(labels, stream_labels[items])
    assert pool.rendered == 12  # each image once, however many epochs


def test_pooled_stream_resumes_at_any_batch():
    whole = [b[1] for b, _ in zip(pooled(size=12, batch=4), range(7))]
    later = [b[1] for b, _ in zip(pooled(size=12, batch=4, start_batch=4), range(3))]
    assert all(torch.equal(a, b) for a, b in zip(whole[4:], later))


def test_pool_settings_are_checked(tiny_config):
    with pytest.raises(ConfigError, match=r"data.pool=8 is smaller than one batch"):
        build_stream(tiny_config("data.pool=8"))
    with pytest.raises(ConfigError, match=r"data.pool applies to the synthetic families"):
        build_stream(tiny_config("data.pool=64", "data.real=fashion-mnist"))
    with pytest.raises(ConfigError, match=r"data.pool"):
        tiny_config("data.pool=0")


def test_pretrain_on_a_pool_resumes_bit_for_bit(tiny_config, tmp_path, monkeypatch):
    # 16 images a step: epochs end mid-batch
    assert_resume_is_bit_exact(monkeypatch, tiny_config("data.pool=40"), tmp_path)


def test_provenance_of_a_pooled_run_names_the_pool_and_verifies(tiny_config, tmp_path):
    import json

    from synthsight.provenance import verify_provenance
    from synthsight.runs import pretrain_run

    pretrain_run(tiny_config("data.pool=40", "trainer.steps=4", "trainer.checkpoint_every=4"), tmp_path / "run",
                 progress=False)
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["data"]["image_ranges"] == [[0, 40]] and "data.pool=40" in record["data"]["split"]
    assert max(e["index"] for e in record["sample"]["images"]) == 39
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["unique_images"] == 40
    report = verify_provenance(tmp_path / "run")
    assert report.passed, report.summary()

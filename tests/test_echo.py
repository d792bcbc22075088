"""Data echoing (data.echo): each rendered batch trains `echo` consecutive steps with fresh views, and a resumed run
sees exactly what an uninterrupted one does."""

import pytest
import torch

import synthsight.train.loop as loop
from synthsight.augment.views import two_views
from synthsight.config import ConfigError
from synthsight.methods.simclr import SimCLR
from synthsight.train.echo import echo_batches, echo_window
from synthsight.train.loop import pretrain
from tests.conftest import assert_resume_is_bit_exact


def test_each_step_group_is_repeated_echo_times():
    got = list(echo_batches(iter(range(6)), accumulate=2, echo=3))
    assert got == [0, 1] * 3 + [2, 3] * 3 + [4, 5] * 3
    assert list(echo_batches(iter(range(4)), accumulate=1, echo=2, first_repeats=1)) == [0, 1, 1, 2, 2, 3, 3]
    assert list(echo_batches(iter(range(3)), accumulate=1, echo=1)) == [0, 1, 2]


def test_echo_window_covers_the_steps_left():
    assert echo_window(0, 12, 4) == (0, 3)
    assert echo_window(5, 12, 4) == (1, 2)  # steps 5-7 echo stream step 1, steps 8-11 stream step 2
    assert echo_window(3, 7, 2) == (1, 3)  # steps 3 | 4, 5 | 6 -> stream steps 1, 2, 3
    assert echo_window(6, 7, 1) == (6, 1)


def test_echoed_steps_train_on_the_same_images_in_new_views(tiny_config, tmp_path, monkeypatch):
    seen = []  # (step, indices, pixel checksum, first view checksum) per training step
    real_for_images, real_step = loop.PerImageRandom.for_images, SimCLR.training_step

    def record_indices(seed, step, indices, *args, **kwargs):
        seen.append([step, list(indices)])
        return real_for_images(seed, step, indices, *args, **kwargs)

    def record_pixels(self, images, g, labels=None):
        seen[-1] += [float(images.double().sum()), float(two_views(images, g, self.views)[0].double().sum())]
        return real_step(self, images, g, labels)

    monkeypatch.setattr(loop.PerImageRandom, "for_images", staticmethod(record_indices))
    monkeypatch.setattr(SimCLR, "training_step", record_pixels)
    pretrain(tiny_config("data.echo=2", "trainer.steps=5"), tmp_path / "run", progress=False)
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    batch = 16
    assert [s[1][0] for s in seen] == [0, 0, batch, batch, 2 * batch]  # stream steps 0, 0, 1, 1, 2
    assert seen[0][2] == seen[1][2] and seen[2][2] == seen[3][2] and seen[0][2] != seen[2][2]  # same pixels
    assert seen[0][3] != seen[1][3] and seen[2][3] != seen[3][3]  # each step its own views


def test_resume_part_way_through_an_echo_matches_the_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    # checkpoint at step 3: the resumed run starts on the second use of a batch
    assert_resume_is_bit_exact(monkeypatch, tiny_config("data.echo=2"), tmp_path)


def test_echo_out_of_range_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match=r"data.echo"):
        tiny_config("data.echo=0")


def test_run_records_count_unique_images(tiny_config, tmp_path):
    import json

    from synthsight.runs import pretrain_run

    from synthsight.provenance import verify_provenance

    pretrain_run(tiny_config("data.echo=4", "trainer.steps=5"), tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["synthetic_images_seen"] == 5 * 16 and summary["unique_images"] == 2 * 16  # batches 0, 1
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["data"]["image_ranges"] == [[0, 2 * 16]] and "data.echo=4" in record["data"]["split"]
    report = verify_provenance(tmp_path / "run")
    assert report.passed, report.summary()

"""The start-of-run header and optional TensorBoard logging (trainer.log=tensorboard)."""

import pytest

from synthsight.config import ConfigError
from synthsight.train.loop import pretrain


def test_tensorboard_holds_the_logged_loss_at_each_logged_step(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    pretrain(tiny_config("trainer.log=tensorboard"), run, progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [2, 4, 6]  # log_every=2, 6 steps
    logged = (run / "train_log.csv").read_text().splitlines()
    last = dict(zip(logged[0].split(","), logged[-1].split(",")))
    assert loss[-1].value == pytest.approx(float(last["loss"]), rel=1e-5)
    assert "train/lr" in events.Tags()["scalars"]


def test_an_unknown_log_kind_names_the_choices(tiny_config):
    with pytest.raises(ConfigError, match="trainer.log.*csv, tensorboard"):
        tiny_config("trainer.log=wandb")


def test_the_header_names_method_backbone_device_folder_and_start(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(tiny_config("trainer.steps=3"), run, progress=True)
    header = capsys.readouterr().err.splitlines()[0]
    assert header.startswith("pretrain: simclr on 2 synthetic families, backbone smallconv")
    assert "device cpu" in header and str(run) in header and "from step 0" in header
    pretrain(tiny_config("trainer.steps=6"), run, resume=True, progress=True)
    assert "resumed from step 3 (step-000003)" in capsys.readouterr().err

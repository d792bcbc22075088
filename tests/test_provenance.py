"""provenance.json is written by every pretraining run, and `synthsight verify` passes on an untouched run and
fails, naming the cause, when a weight byte, a config value or a generator version changes."""

import json
import shutil

import pytest

from synthsight.cli import main
from synthsight.config import load_config
from synthsight.generators.dead_leaves import DeadLeaves
from synthsight.provenance import sample_indices, verify_provenance
from synthsight.runs import pretrain_run
from tests.conftest import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("prov") / "run"
    pretrain_run(load_config("demo", TINY), run, progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run folder, free to tamper with."""
    return shutil.copytree(trained, tmp_path / "run")


def _record(run):
    return json.loads((run / "provenance.json").read_text())


def _rewrite(run, change):
    record = _record(run)
    change(record)
    (run / "provenance.json").write_text(json.dumps(record))


def test_record_holds_code_config_generators_ranges_sample_and_weights(trained):
    record = _record(trained)
    assert record["code"]["version"] == "0.1.0" and "git_commit" in record["code"]
    assert record["config"] == json.loads((trained / "config.json").read_text())
    assert [g["family"] for g in record["data"]["generators"]] == ["dead_leaves", "spectrum"]
    assert all(g["version"] for g in record["data"]["generators"])
    assert record["data"]["image_ranges"] == [[0, 6 * 16]]  # steps x global batch
    assert [e["index"] for e in record["sample"]["images"]] == sample_indices([[0, 96]])
    assert len(record["sample"]["images"]) == 16 and len(record["sample"]["sha256"]) == 64
    assert list(record["weights"]) == ["checkpoints/step-000006/model.safetensors"]


def test_sample_indices_spread_over_the_range():
    assert sample_indices([[0, 1000]], 4) == [0, 333, 666, 999]
    assert sample_indices([[0, 3]], 16) == [0, 1, 2]
    assert sample_indices([[0, 10], [100, 110]], 3) == [0, 100, 109]


def test_verify_passes_on_an_untouched_run(trained, capsys):
    assert main(["verify", str(trained / "provenance.json")]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("PASS") and "FAIL" not in out
    assert main(["verify", str(trained)]) == 0  # the folder works too


def test_verify_names_a_changed_weight_byte(run, capsys):
    weights = run / "checkpoints" / "step-000006" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  weights: checkpoints/step-000006/model.safetensors: SHA-256" in out and "changed" in out
    assert out.strip().splitlines()[-1] == "FAIL (weights differ)"


def test_verify_names_a_changed_config_value(run, capsys):
    _rewrite(run, lambda r: r["config"]["trainer"].__setitem__("lr", 0.5))
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  config" in out and "trainer.lr: 0.5 vs 0.002" in out


def test_verify_names_a_changed_data_seed_in_config_and_sample(run):
    _rewrite(run, lambda r: r["config"]["data"].__setitem__("seed", 7))
    report = verify_provenance(run)
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert "data.seed: 7 vs 0" in failed["config"]
    assert "regenerated images differ" in failed["sample"]


def test_verify_names_a_changed_generator_version_in_the_record(run, capsys):
    _rewrite(run, lambda r: r["data"]["generators"][0].__setitem__("version", "0"))
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  generators: dead_leaves/mixed version: recorded '0', this code '1'" in out


def test_verify_names_a_generator_version_bumped_in_the_code(trained, monkeypatch, capsys):
    monkeypatch.setattr(DeadLeaves, "version", "2")
    assert main(["verify", str(trained)]) == 1
    assert "dead_leaves/mixed version: recorded '1', this code '2'" in capsys.readouterr().out


def test_verify_names_a_regenerated_image_that_differs(run):
    def corrupt(record):
        record["sample"]["images"][3]["sha256"] = "0" * 64
    _rewrite(run, corrupt)
    report = verify_provenance(run)
    (bad,) = [c for c in report.checks if not c.ok]
    assert bad.name == "sample" and f"image {_record(run)['sample']['images'][3]['index']} " in bad.detail


def test_verify_rejects_what_is_not_a_record(tmp_path, capsys):
    (tmp_path / "provenance.json").write_text(json.dumps({"format": "something-else"}))
    assert main(["verify", str(tmp_path)]) == 2
    assert "not a synthsight provenance record" in capsys.readouterr().err


def test_verify_fails_on_a_changed_trainer_value_in_config_json(run, capsys):
    """Only a larger trainer.steps (a resumed run) is a note; any other change to config.json fails."""
    config = json.loads((run / "config.json").read_text())
    config["trainer"]["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    assert main(["verify", str(run)]) == 1
    assert "FAIL  config" in capsys.readouterr().out


def test_verify_notes_a_resumed_trainer_steps_in_config_json(run, capsys):
    config = json.loads((run / "config.json").read_text())
    config["trainer"]["steps"] = 3
    (run / "config.json").write_text(json.dumps(config))
    assert main(["verify", str(run)]) == 0
    assert "note  config.json holds the run's starting trainer.steps" in capsys.readouterr().out

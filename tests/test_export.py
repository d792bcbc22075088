"""`synthsight export`: timm loads the safetensors export with no synthsight code and gives the checkpoint's
features; the ONNX graph matches PyTorch in onnxruntime; the model card and provenance come with every export."""

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from synthsight.cli import main
from synthsight.config import load_config
from synthsight.eval.run import load_backbone
from synthsight.export.exporter import export
from synthsight.export.onnx_model import onnx_available
from synthsight.export.timm_weights import load_exported, timm_compatibility
from synthsight.provenance import verify_provenance
from synthsight.runs import pretrain_run
from tests.conftest import TINY

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="optional extra 'export' (onnx, onnxruntime) missing")

TIMM_ONLY = """
import sys, torch, timm
from safetensors.torch import load_file, save_file
folder, inputs, outputs = sys.argv[1:]
x = load_file(inputs)["x"]
by_file = timm.create_model("resnet18", pretrained=True, num_classes=0,
                            pretrained_cfg_overlay=dict(file=folder + "/model.safetensors"))
by_dir = timm.create_model("local-dir:" + folder, pretrained=True, num_classes=0)
with torch.no_grad():
    y = {"file": by_file.eval()(x), "dir": by_dir.eval()(x)}
assert not [m for m in sys.modules if m.startswith("synthsight")], "synthsight was imported"
print(by_dir.pretrained_cfg["mean"], by_dir.pretrained_cfg["std"])
save_file(y, outputs)
"""


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    """A timm-buildable ResNet-18 (standard stem), trained 2 steps so BatchNorm statistics are not the defaults."""
    run = tmp_path_factory.mktemp("export") / "r18"
    cfg = load_config("demo", TINY + ["model.backbone=resnet18", "model.small_stem=false", "trainer.steps=2"])
    pretrain_run(cfg, run, progress=False)
    return run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "small"
    pretrain_run(load_config("demo", TINY + ["trainer.steps=2"]), run, progress=False)
    return run


def _images(n=4, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_timm_alone_loads_the_export_and_gives_the_checkpoint_features(resnet_run, tmp_path):
    out = tmp_path / "x"
    info = export(resnet_run, ["safetensors"], out, progress=False)
    assert info["timm_architecture"] == "resnet18" and (out / "config.json").is_file()
    x = _images()
    save_file({"x": x}, str(tmp_path / "in.safetensors"))
    done = subprocess.run([sys.executable, "-c", TIMM_ONLY, str(out), str(tmp_path / "in.safetensors"),
                           str(tmp_path / "out.safetensors")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[0.5, 0.5, 0.5] [0.25, 0.25, 0.25]" in done.stdout  # config.json carries our normalisation
    backbone, _, _ = load_backbone(resnet_run)
    with torch.no_grad():
        expected = backbone.eval()(x)
    got = load_file(str(tmp_path / "out.safetensors"))
    for route in ("file", "dir"):
        torch.testing.assert_close(got[route], expected, rtol=1e-5, atol=1e-5)


def test_small_stem_and_smallconv_say_why_timm_cannot_load_them(small_run, tmp_path, capsys):
    cfg = load_config("demo", TINY + ["model.backbone=resnet18", "model.small_stem=true"])
    from synthsight.models.build import build_backbone

    arch, reason = timm_compatibility(cfg, build_backbone(cfg))
    assert arch is None and "small stem" in reason and "stride-2" in reason and "ONNX" in reason
    out = tmp_path / "x"
    assert main(["export", str(small_run), "--format", "safetensors", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "WARNING: this export does NOT load with timm alone" in printed.err and f"export folder: {out}" in printed.out
    assert not (out / "config.json").exists()
    assert "not loadable by timm" in (out / "README.md").read_text()
    backbone, _, _ = load_backbone(small_run)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x), backbone.eval()(x))


@needs_onnx
def test_onnx_matches_pytorch_with_and_without_head(small_run, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "x"
    info = export(small_run, ["onnx"], out, with_head=True, progress=False)
    assert info["onnx"]["outputs"] == ["features", "head"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = _images(n=7)  # another batch size than the one traced
    features, head = session.run(["features", "head"], {"images": x.numpy()})
    assert info["onnx"]["inputs"]["images"] == ["batch", 3, "height", "width"]  # a ConvNet takes any side
    other = _images(n=3, size=2 * x.shape[-1])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(session.run(["features"], {"images": other.numpy()})[0]),
                                   load_backbone(small_run)[0].eval()(other), rtol=1e-4, atol=1e-5)
    backbone, _, ckpt = load_backbone(small_run)
    weights = load_file(str(ckpt / "model.safetensors"))
    from synthsight.models.heads import mlp_head

    projector = mlp_head(32, 32, 16)
    projector.load_state_dict({k[len("projector."):]: v for k, v in weights.items() if k.startswith("projector.")})
    with torch.no_grad():
        f = backbone.eval()(x)
        torch.testing.assert_close(torch.from_numpy(features), f, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(head), projector.eval()(f), rtol=1e-4, atol=1e-5)


@needs_onnx
def test_export_writes_card_and_a_provenance_that_verifies(resnet_run, tmp_path, capsys):
    (resnet_run / "eval").mkdir(exist_ok=True)
    (resnet_run / "eval" / "metrics.json").write_text(json.dumps({
        "checkpoint": "c", "train_data": "fashion-mnist:train", "test_data": "fashion-mnist:test",
        "encoders": [{"name": "synthsight pretrained (synthetic only)", "results": {"knn": {
            "top1": 0.8123, "description": "k-NN, cosine similarity, k=20"}}}]}))
    out = tmp_path / "x"
    assert main(["export", str(resnet_run), "--with-head", "--out", str(out)]) == 0
    assert f"export folder: {out}" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    for text in ("resnet18", "simclr", "dead_leaves", "generator version", "Images seen: **32**", "wall-clock seconds",
                 "81.23%", "k-NN, cosine similarity, k=20", "Apache-2.0", "no photograph", "timm.create_model"):
        assert text in card, text
    record = json.loads((out / "provenance.json").read_text())
    assert record["kind"] == "export" and set(record["weights"]) == {"model.safetensors", "head.safetensors",
                                                                     "model.onnx"}
    assert verify_provenance(out).passed
    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(data))
    report = verify_provenance(out)
    assert not report.passed and "model.onnx: SHA-256" in report.summary()


def test_export_refuses_an_unknown_format_and_a_foreign_folder(small_run, tmp_path, capsys):
    assert main(["export", str(small_run), "--format", "onxx", "--out", str(tmp_path / "a")]) == 2
    assert "did you mean 'onnx'" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    assert main(["export", str(small_run), "--format", "safetensors", "--out", str(tmp_path / "b")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "b" / "notes.txt").exists()


def test_no_code_path_unpickles():
    from pathlib import Path

    import synthsight

    # The one exception: CIFAR's own pickle files, read by an unpickler that refuses every global but numpy's
    # array rebuilders (tests/test_eval_formats.py checks that a pickle calling os.system is refused).
    allowed = {Path(synthsight.__file__).parent / "eval" / "cifar.py": ("import pickle",)}
    for path in Path(synthsight.__file__).parent.rglob("*.py"):
        text = path.read_text()
        for banned in ("torch.load(", "pickle.load", "allow_pickle=True", "weights_only=False", "import pickle"):
            if banned not in allowed.get(path, ()):
                assert banned not in text, f"{path} uses {banned}"
    assert "def find_class" in next(iter(allowed)).read_text()  # the restricted unpickler is still there


@pytest.mark.parametrize("command", ["distill", "export", "verify"])
def test_issue7_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: synthsight " + command in capsys.readouterr().out


def test_vit_export_rebuilds_with_its_image_and_patch_size(tmp_path):
    run = tmp_path / "vit"
    cfg = load_config("demo", TINY + ["model.backbone=vit_tiny", "views.size=24", "model.patch_size=6",
                                      "trainer.steps=1"])
    pretrain_run(cfg, run, progress=False)
    out = tmp_path / "x"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    backbone, _, _ = load_backbone(run)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x), backbone.eval()(x))


def test_a_failed_export_leaves_the_earlier_one_and_added_files_are_not_deleted(small_run, tmp_path, monkeypatch,
                                                                                   capsys):
    import errno

    import synthsight.export.exporter as exporter

    out = tmp_path / "x"
    export(small_run, ["safetensors"], out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.safetensors"))

    with monkeypatch.context() as patch:
        patch.setattr(exporter, "write_weights", full)
        assert main(["export", str(small_run), "--format", "safetensors", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert err.startswith("synthsight export: error: the disk is full: could not write")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier export, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no temporary folder left beside it

    export(small_run, ["safetensors"], out, progress=False)  # an earlier export alone is replaced
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(small_run), "--format", "safetensors", "--out", str(out)]) == 2
    assert "other files (notes.txt); refusing to delete them" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["export", str(small_run), "--format", "safetensors", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "export.json").is_file()
    assert main(["export", str(small_run), "--out", str(small_run), "--overwrite"]) == 2  # never the run itself
    assert "is a run folder" in capsys.readouterr().err and (small_run / "config.json").is_file()


def test_exported_weights_have_the_permissions_of_the_other_files(small_run, tmp_path):
    out = tmp_path / "x"
    export(small_run, ["safetensors"], out, with_head=True, progress=False)
    mode = (out / "README.md").stat().st_mode & 0o777
    assert {(out / n).stat().st_mode & 0o777 for n in ("model.safetensors", "head.safetensors")} == {mode}


@pytest.mark.parametrize("preset", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*_gpu.yaml")))
def test_every_gpu_preset_trains_a_backbone_timm_loads_alone(preset):
    from synthsight.models.build import build_backbone

    cfg = load_config(preset)
    arch, reason = timm_compatibility(cfg, build_backbone(cfg))
    assert arch is not None, f"{preset}: {reason}"

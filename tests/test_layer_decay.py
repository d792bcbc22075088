"""Layer-wise lr decay for fine-tuning ViTs, and masked image modelling end to end through the command line:
pretrain with the mae_cpu preset, fine-tune with layer decay and mean pooling, probe with the CLS token, and
load the export with timm alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import two_class_npz
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from synthsight.cli import main
from synthsight.eval.data import LabeledImages
from synthsight.eval.finetune import FinetuneSettings, finetune
from synthsight.eval.layer_decay import layer_decay_groups, vit_layer_index
from synthsight.models.backbones import create_backbone


def _vit():
    torch.manual_seed(0)
    return create_backbone("vit_tiny", image_size=16, patch_size=4)


def test_layer_index_orders_a_vit_from_embeddings_to_head():
    assert [vit_layer_index(n, 12) for n in ("cls_token", "pos_embed", "patch_embed.proj.weight")] == [0, 0, 0]
    assert vit_layer_index("blocks.0.attn.qkv.weight", 12) == 1
    assert vit_layer_index("blocks.11.mlp.fc2.bias", 12) == 12
    assert vit_layer_index("norm.weight", 12) == 13


def test_groups_scale_lr_by_depth_and_cover_every_parameter_once():
    net, head = _vit(), nn.Linear(192, 10)
    groups = layer_decay_groups(net, head, weight_decay=0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert len(scale) == sum(len(g["params"]) for g in groups) == len(list(net.parameters())) + 2
    params = dict(net.named_parameters())
    assert scale[id(params["patch_embed.proj.weight"])] == 0.5 ** 13
    assert scale[id(params["blocks.0.attn.qkv.weight"])] == 0.5 ** 12
    assert scale[id(params["blocks.11.attn.qkv.weight"])] == 0.5
    assert scale[id(params["norm.weight"])] == 1.0 and scale[id(head.weight)] == 1.0
    assert wd[id(head.weight)] == 0.05 and wd[id(head.bias)] == 0.0 and wd[id(params["norm.weight"])] == 0.0
    off = layer_decay_groups(net, head, 0.05, 1.0)
    assert {g["lr_scale"] for g in off} == {1.0} and len(off) == 2  # decayed and not: as without layer decay


def test_layer_decay_needs_a_vit():
    with pytest.raises(ValueError, match="--layer-decay 1"):
        layer_decay_groups(create_backbone("smallconv", width=8), nn.Linear(32, 2), 0.05, 0.75)
    with pytest.raises(ValueError, match="layer_decay"):
        FinetuneSettings(layer_decay=0.0)


def test_finetune_moves_the_low_layers_less_with_layer_decay():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (32, 3, 16, 16), generator=g, dtype=torch.uint8)
    data = LabeledImages(x, torch.arange(32) % 2, ["a", "b"], "t")

    def change(layer_decay: float, name: str) -> float:
        net = _vit()
        before = dict(net.named_parameters())[name].detach().clone()
        run = finetune(net, data, data, FinetuneSettings(epochs=1, batch_size=8, augment=False, amp=False,
                                                         layer_decay=layer_decay))
        return float((dict(run.model[0].named_parameters())[name].detach() - before).abs().max())

    embed = "patch_embed.proj.weight"
    assert change(1e-3, embed) < 0.01 * change(1.0, embed)  # lr x 1e-3^13: the embedding barely moves
    assert change(1e-3, "norm.weight") > 0.5 * change(1.0, "norm.weight")  # the top keeps the full lr


# -------------------------------------------------------------------------------------------- end to end

TIMM_ONLY = """
import json, sys, torch, timm
from safetensors.torch import load_file, save_file
folder, inputs, outputs = sys.argv[1:]
info = json.load(open(folder + "/export.json"))
x = load_file(inputs)["x"]
by_file = timm.create_model(info["timm_architecture"], pretrained=True, num_classes=0,
                            pretrained_cfg_overlay=dict(file=folder + "/model.safetensors"),
                            **info["timm_model_args"])
by_dir = timm.create_model("local-dir:" + folder, pretrained=True, num_classes=0)
with torch.no_grad():
    y = {"file": by_file.eval()(x), "dir": by_dir.eval()(x)}
assert not [m for m in sys.modules if m.startswith("synthsight")], "synthsight was imported"
save_file(y, outputs)
"""


def _npz(path, n=32, size=16, seed=0):
    return two_class_npz(path, n, size, seed)


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mim") / "mae"
    tiny = ["data.render_size=32", "views.size=16", "trainer.batch_size=8", "trainer.steps=2", "trainer.warmup_steps=1",
            "trainer.workers=0", "trainer.threads=1", "trainer.device=cpu", "method.decoder_dim=32",
            "method.decoder_depth=1"]
    assert main(["pretrain", "--preset", "mae_cpu", *tiny, "--out", str(run)]) == 0
    return run


def test_mae_run_fine_tunes_with_layer_decay_and_probes_with_either_pool(mae_run, tmp_path, capsys):
    train, test = _npz(tmp_path / "train.npz"), _npz(tmp_path / "test.npz", seed=1)
    common = ["--data", str(train), "--test-data", str(test), "--device", "cpu"]
    assert main(["finetune", str(mae_run), *common, "--epochs", "1", "--batch-size", "8", "--layer-decay", "0.75",
                 "--out", str(tmp_path / "ft")]) == 0
    assert "layer-wise lr decay 0.75" in capsys.readouterr().out
    record = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert record["pool"] == "avg" and record["result"]["settings"]["layer_decay"] == 0.75  # the preset's pool
    assert main(["finetune", str(mae_run), *common, "--epochs", "1", "--batch-size", "8", "--pool", "token",
                 "--init", "random", "--out", str(tmp_path / "ft-random")]) == 0
    assert json.loads((tmp_path / "ft-random" / "metrics.json").read_text())["pool"] == "token"
    for pool in ("token", "avg"):
        assert main(["eval", str(mae_run), *common, "--protocols", "knn", "--pool", pool, "--no-analysis",
                     "--out", str(tmp_path / f"eval-{pool}")]) == 0
    knn = [json.loads((tmp_path / f"eval-{p}" / "metrics.json").read_text()) for p in ("token", "avg")]
    assert all(len(k["encoders"]) == 2 for k in knn)  # random init and the run, both pooled as asked


def test_mae_vit_export_loads_in_timm_alone(mae_run, tmp_path):
    from synthsight.eval.run import load_backbone

    out = tmp_path / "x"
    assert main(["export", str(mae_run), "--format", "safetensors", "--out", str(out)]) == 0
    info = json.loads((out / "export.json").read_text())
    assert info["timm_architecture"] == "vit_tiny_patch16_224" and info["timm_model_args"]["global_pool"] == "avg"
    assert "patch_size=4" in (out / "README.md").read_text()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    save_file({"x": x}, str(tmp_path / "in.safetensors"))
    done = subprocess.run([sys.executable, "-c", TIMM_ONLY, str(out), str(tmp_path / "in.safetensors"),
                           str(tmp_path / "out.safetensors")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    backbone, _, _ = load_backbone(mae_run)
    with torch.no_grad():
        expected = backbone.eval()(x)
    got = load_file(str(tmp_path / "out.safetensors"))
    for route in ("file", "dir"):
        torch.testing.assert_close(got[route], expected, rtol=1e-4, atol=1e-4)

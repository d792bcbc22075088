"""Backbone weights as safetensors, with a timm config.json when timm itself can rebuild the network.

For a backbone timm can build as-is (resnet18/resnet50 with model.small_stem=false, vit_tiny, any 'timm/<arch>'
that synthsight does not modify), the state-dict keys are timm's own, so either of these loads the export with no
synthsight code:

    timm.create_model("resnet18", pretrained=True, num_classes=0,
                      pretrained_cfg_overlay=dict(file="OUT/model.safetensors", mean=MEAN, std=STD))
    timm.create_model("local-dir:OUT", pretrained=True, num_classes=0)        # reads OUT/config.json

A ViT also needs its model arguments (grid, patch side, pooling; `timm_model_args`): config.json carries them as
timm's `model_args`, so the local-dir form needs nothing more; the file form passes them, e.g.
`timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0, img_size=32, patch_size=4,
dynamic_img_size=True, global_pool="avg", fc_norm=False, pretrained_cfg_overlay=dict(file=...))`.

Not every synthsight backbone is a timm network: the small stem (3x3 stride-1 conv1, no max-pool, for 32-64 px
images) has no counterpart among timm ResNet's arguments (every `stem_type` starts with a stride-2 convolution,
and `replace_stem_pool` swaps the max-pool for another stride-2 convolution), and `smallconv` is synthsight's own
ConvNet. Their weights are still exported (loadable with `load_exported`), without a timm config.json, and
`timm_compatibility` says why; ONNX runs them anywhere.

Example:
    >>> arch, reason = timm_compatibility(cfg, backbone)     # ('resnet18', '') or (None, 'why not')
    >>> files = write_weights(backbone, cfg, Path("out"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from synthsight.checkpoint import save_tensors
from synthsight.config import Config, ModelConfig, build_dataclass
from synthsight.models.backbones import TIMM_PREFIX, VIT_ARCHITECTURES, create_backbone, vit_timm_args
from synthsight.models.preprocess import MEAN, STD

WEIGHTS = "model.safetensors"
HEAD_WEIGHTS = "head.safetensors"
TIMM_CONFIG = "config.json"
EXPORT_INFO = "export.json"  # synthsight's own description of the folder (how to rebuild, inputs, checks)
# registered synthsight names that are timm models (the ViTs with the arguments of `timm_model_args`)
TIMM_NAMES = {"resnet18": "resnet18", "resnet50": "resnet50", **VIT_ARCHITECTURES}


def timm_architecture_name(model: ModelConfig) -> str | None:
    """The timm architecture a backbone config names, or None for synthsight's own networks."""
    if model.backbone.startswith(TIMM_PREFIX):
        return model.backbone[len(TIMM_PREFIX):]
    return TIMM_NAMES.get(model.backbone)


def timm_model_args(cfg: Config) -> dict[str, Any]:
    """The keyword arguments timm needs besides the architecture name to rebuild the backbone: a ViT's grid,
    patch side and pooling (`models.backbones.vit_timm_args`); none for the others."""
    if cfg.model.backbone in VIT_ARCHITECTURES:
        return vit_timm_args(cfg.views.size, cfg.model.patch_size, cfg.model.pool)
    return {}


def timm_compatibility(cfg: Config, backbone: nn.Module) -> tuple[str | None, str]:
    """(timm architecture, "") when `timm.create_model(arch, num_classes=0, **timm_model_args(cfg))` has exactly
    this backbone's state-dict keys and shapes; otherwise (None, a sentence saying why and what to use instead)."""
    import timm

    arch = timm_architecture_name(cfg.model)
    fallback = "load it with synthsight (`synthsight.export.timm_weights.load_exported`) or use the ONNX export"
    if arch is None:
        return None, f"{cfg.model.backbone!r} is synthsight's own network, not a timm architecture; {fallback}"
    reference = timm.create_model(arch, pretrained=False, num_classes=0, **timm_model_args(cfg))
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    if ours == theirs:
        return arch, ""
    if cfg.model.small_stem and arch.startswith("resnet"):
        return None, (f"this {arch} uses synthsight's small stem (model.small_stem=true: a 3x3 stride-1 conv1 and no "
                      "max-pool, for 32-64 px images), which timm's ResNet cannot build: every timm stem_type begins "
                      "with a stride-2 convolution and replace_stem_pool adds another; " + fallback +
                      " (or pretrain with model.small_stem=false for a timm-loadable ResNet)")
    diff = sorted(set(ours.items()) ^ set(theirs.items()))[:3]
    return None, f"its parameters differ from timm's {arch} (e.g. {diff}); {fallback}"


def timm_config(arch: str, num_features: int, image_size: int, model_args: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """A timm hub-style config.json: `timm.create_model("local-dir:FOLDER")` rebuilds the model (with
    `model_args`, e.g. a ViT's grid and pooling) and its preprocessing (input size, synthsight's normalisation)."""
    model_args = dict(model_args or {})
    first_conv = "conv1" if arch.startswith("resnet") else "patch_embed.proj" if arch.startswith("vit") else None
    config = {
        "architecture": arch,
        "num_classes": 0,
        "num_features": num_features,
        "global_pool": model_args.get("global_pool", "avg"),
        "pretrained_cfg": {
            "input_size": [3, image_size, image_size], "fixed_input_size": False, "interpolation": "bilinear",
            "crop_pct": 1.0, "crop_mode": "center", "mean": list(MEAN), "std": list(STD), "num_classes": 0,
            "first_conv": first_conv, "classifier": None, "license": "apache-2.0", "tag": "synthsight",
        },
    }
    if model_args:
        config["model_args"] = model_args
    return config


def write_weights(backbone: nn.Module, cfg: Config, out_dir: Path, head: nn.Module | None = None) -> dict[str, Any]:
    """Write model.safetensors (+ head.safetensors, + config.json when timm can rebuild the backbone); returns a
    description: files written, the timm architecture or the reason there is none."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    save_tensors(weights, out_dir / WEIGHTS, metadata={"format": "pt", "producer": "synthsight"})
    files = [WEIGHTS]
    if head is not None:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                     out_dir / HEAD_WEIGHTS, metadata={"format": "pt", "producer": "synthsight"})
        files.append(HEAD_WEIGHTS)
    arch, reason = timm_compatibility(cfg, backbone)
    if arch is not None:
        config = timm_config(arch, backbone.num_features, cfg.views.size, timm_model_args(cfg))
        (out_dir / TIMM_CONFIG).write_text(json.dumps(config, indent=1))
        files.append(TIMM_CONFIG)
    return {"files": files, "timm_architecture": arch, "timm_reason": reason,
            "timm_model_args": timm_model_args(cfg) if arch is not None else {}}


def load_exported(out_dir: Path) -> nn.Module:
    """The backbone of an export folder, rebuilt with synthsight (for networks timm cannot build); eval mode."""
    info = json.loads((Path(out_dir) / EXPORT_INFO).read_text())
    model = build_dataclass(ModelConfig, info["model"], "model")
    net = create_backbone(model.backbone, small_stem=model.small_stem, width=model.width,
                          image_size=info.get("image_size"), patch_size=model.patch_size,
                          pool=model.pool)  # ViTs need all three
    net.load_state_dict(load_file(str(Path(out_dir) / WEIGHTS)))
    return net.eval()


"""ONNX export of a backbone (optionally with its head), checked by running it with onnxruntime.

The graph takes `images`: float32 Tensor[B, 3, S, S], already normalised as `models.preprocess.normalize_images`
does ((x - 0.5) / 0.25 for x in [0, 1]), with a dynamic batch axis; it returns `features` Tensor[B, D] and, with
the head, `head` Tensor[B, K]. After writing, the file is run with onnxruntime on a batch of a different size than
the one traced and compared with PyTorch; a mismatch beyond tolerance raises ExportError.

Uses torch's TorchScript-based exporter (`dynamo=False`): it needs only the `onnx` package (the torch.export-based
one also needs onnxscript) and handles these convolutional networks exactly.

Example:
    >>> check = export_onnx(backbone, Path("out/model.onnx"), image_size=32, head=projector)
    >>> check["max_abs_diff"] < 1e-4
    True
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ONNX_FILE = "model.onnx"
OPSET = 17
RTOL, ATOL = 1e-3, 1e-4  # float32 kernels differ in summation order between PyTorch and onnxruntime
INSTALL_HINT = "ONNX export needs the optional extra: pip install 'synthsight[export]' (onnx and onnxruntime)"


class ExportError(RuntimeError):
    """An export that could not be written or does not reproduce the PyTorch outputs."""


class _WithHead(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return f, self.head(f)


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def has_fixed_input_size(backbone: nn.Module) -> bool:
    """True for networks whose input side is part of the weights (a ViT's position embeddings); ConvNets with
    global pooling take any side."""
    return hasattr(backbone, "pos_embed") or hasattr(backbone, "patch_embed")


def export_onnx(backbone: nn.Module, path: Path, image_size: int, head: nn.Module | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Write `path` and check it with onnxruntime; returns what was checked (batch, max differences, tolerance).

    The batch axis is always dynamic; the image height and width are too where the network allows it (not a ViT,
    whose position embeddings fix the grid), checked at the training side and at 1.5x it."""
    if not onnx_available():
        raise ExportError(INSTALL_HINT)
    import onnx

    net = (_WithHead(backbone, head) if head is not None else backbone).cpu().eval()
    net = net.to(memory_format=torch.contiguous_format)
    outputs = ["features", "head"] if head is not None else ["features"]
    dynamic_size = not has_fixed_input_size(backbone)
    image_axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    g = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, image_size, image_size, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            net, (example,), str(path), dynamo=False, input_names=["images"], output_names=outputs,
            dynamic_axes={"images": image_axes, **{o: {0: "batch"} for o in outputs}}, opset_version=OPSET,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    check = verify_onnx(net, path, image_size, outputs, seed=seed + 1)
    if dynamic_size:  # another side must give PyTorch's answer too
        check["other_size"] = {"side": image_size * 3 // 2,
                               **verify_onnx(net, path, image_size * 3 // 2, outputs, seed=seed + 2)}
    side = ["height", "width"] if dynamic_size else [image_size, image_size]
    check.update(opset=OPSET, inputs={"images": ["batch", 3, *side]},
                 outputs=outputs, normalisation="(x - 0.5) / 0.25 per channel, x in [0, 1]")
    return check


def verify_onnx(net: nn.Module, path: Path, image_size: int, outputs: list[str], batch: int = 5,
                seed: int = 1) -> dict[str, Any]:
    """Run `path` with onnxruntime (CPU) and `net` with PyTorch on the same random batch; raise on mismatch."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = net.eval()(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {"images": x.numpy()})
    diffs = {}
    for name, e, o in zip(outputs, expected, got):
        e = e.numpy()
        if e.shape != o.shape:
            raise ExportError(f"{path}: output {name!r} has shape {o.shape} in onnxruntime, {e.shape} in PyTorch")
        diffs[name] = float(np.abs(e - o).max())
        if not np.allclose(o, e, rtol=RTOL, atol=ATOL):
            raise ExportError(f"{path}: output {name!r} differs from PyTorch by up to {diffs[name]:.3g} "
                              f"(tolerance rtol={RTOL}, atol={ATOL}); the ONNX file is not usable")
    return {"checked_with": f"onnxruntime {ort.__version__} (CPU) vs torch {torch.__version__}", "batch": batch,
            "max_abs_diff": diffs, "rtol": RTOL, "atol": ATOL}

"""Projection heads built from blocks."""

from __future__ import annotations

from torch import nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, batch_norm: bool = True,
             last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a final Linear (the SimCLR projector for num_layers=2).

    `batch_norm=False` drops the hidden BatchNorms (MoCo v2's Linear-ReLU-Linear head); `last_bn=True` ends with a
    BatchNorm without affine parameters after a bias-free final Linear (SimSiam's projector, MoCo v3's heads).
    """
    if num_layers < 1:
        raise ValueError(f"a head needs at least one layer, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        if batch_norm:
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        else:
            layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)

"""The DINO projection head (Caron et al. 2021): an MLP to a bottleneck, L2 normalisation, then a weight-normalised
linear layer to K prototype scores.

Tensor[B, in_dim] -> Tensor[B, out_dim] logits. The last layer's rows are unit vectors (weight normalisation with
the gain fixed at 1, DINO's `norm_last_layer=True`), so every logit is a cosine similarity in [-1, 1] between the
normalised bottleneck feature and a prototype; the temperatures then set how sharp the softmax is.

Example:
    >>> head = DINOHead(192, out_dim=4096)
    >>> z = head.embed(features)               # Tensor[B, 128], unit length
    >>> logits = head.last_layer(z)            # Tensor[B, 4096]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormalizedLinear(nn.Module):
    """x -> x @ normalize(weight, rows).T without bias: weight normalisation with gain 1 (no gain parameter)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))


class DINOHead(nn.Module):
    """`num_layers` Linear layers (GELU between, no BatchNorm) to `bottleneck_dim`, L2-normalise, `NormalizedLinear`."""

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the DINO head needs at least one layer, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, out_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[B, in_dim] -> the unit-length bottleneck feature Tensor[B, bottleneck_dim]."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.embed(x))

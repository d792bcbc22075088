"""The light decoder of masked image modelling, and the fixed 2-D sin-cos position embeddings it uses.

MAE (He et al. 2022): the encoder's tokens of the visible patches are projected to a narrower width, a shared
learned mask token fills every hidden position, the sequence is put back in image order, fixed sin-cos positions
are added, and a few transformer blocks + a linear layer predict something per patch (MAE: its pixels; data2vec
2.0: the teacher's representation). The decoder is thrown away after pretraining; only the encoder is kept.

Shapes: tokens Tensor[B, P + V, D_enc] (P prefix tokens, e.g. the CLS token, then V visible patches in shuffled
order), restore int64 [B, N] -> predictions Tensor[B, N, out_dim] in image order.

Example:
    >>> dec = MaskedDecoder(192, out_dim=48, dim=128, depth=2, heads=4)
    >>> pred = dec(tokens, mask.restore, grid=(8, 8))     # [B, 64, 48]
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from synthsight.models.backbones import attention_by_device_


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Transformer sin-cos embedding (Vaswani et al. 2017) of float positions Tensor[M] -> Tensor[M, dim] (dim
    even): sin of the first half of the frequencies, cos of the second."""
    if dim % 2:
        raise ValueError(f"a sin-cos embedding needs an even width, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """MAE's fixed 2-D position embeddings Tensor[gh x gw, dim] (dim divisible by 4), row-major like the patch
    sequence: half the width encodes the row, half the column."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1)


def take_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, k]] for every b, k: Tensor[B, N, D] and int64 [B, K] -> Tensor[B, K, D]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MaskedDecoder(nn.Module):
    """Project, fill the hidden positions with a mask token, un-shuffle, add positions, `depth` ViT blocks, predict."""

    def __init__(self, in_dim: int, out_dim: int, dim: int = 128, depth: int = 2, heads: int = 4,
                 num_prefix: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder width {dim} is not divisible by its {heads} heads; change method.decoder_dim")
        self.num_prefix = num_prefix
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = attention_by_device_(nn.Sequential(*[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True)
                                                           for _ in range(depth)]))
        self.norm = nn.LayerNorm(dim)
        self.predict = nn.Linear(dim, out_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():  # MAE's initialisation: xavier-uniform linear layers, zero biases
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.embed(tokens)
        prefix, visible = x[:, : self.num_prefix], x[:, self.num_prefix :]
        b, n = restore.shape
        if n != grid[0] * grid[1]:
            raise ValueError(f"restore has {n} positions but the grid {grid} has {grid[0] * grid[1]} patches")
        filled = torch.cat([visible, self.mask_token.to(visible.dtype).expand(b, n - visible.shape[1], -1)], dim=1)
        patches = take_tokens(filled, restore)  # back in image order
        patches = patches + sincos_2d(patches.shape[-1], *grid).to(patches.device, patches.dtype)
        x = self.norm(self.blocks(torch.cat([prefix, patches], dim=1)))
        return self.predict(x[:, self.num_prefix :])

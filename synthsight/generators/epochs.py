"""Epochs over a finite set: stream image i is item perm_e[i mod N] of the set, where e = i // N is the epoch and
perm_e a permutation seeded by (seed, e, salt). Every epoch visits each item once, in a fresh order, and the map is
a pure function of (seed, N, i): the same however a stream is split over ranks and workers, or resumed.

Example:
    >>> order = EpochOrder(seed=0, size=1000, salt="pool/epoch-permutation")
    >>> order.item(1234)   # which of the 1000 items stream image 1234 is (epoch 1, position 234)
"""

from __future__ import annotations

import torch

from synthsight.generators.base import image_seed


class EpochOrder:
    def __init__(self, seed: int, size: int, salt: str) -> None:
        if size < 1:
            raise ValueError(f"a finite set needs at least one item, got {size}")
        self.seed, self.size, self.salt = seed, size, salt
        self._perms: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of `epoch`: a pure function of (seed, epoch, salt); the last few are cached."""
        if epoch not in self._perms:
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))
            g = torch.Generator().manual_seed(image_seed(self.seed, epoch, self.salt))
            self._perms[epoch] = torch.randperm(self.size, generator=g)
        return self._perms[epoch]

    def item(self, index: int) -> int:
        """Which item stream image `index` is."""
        if index < 0:
            raise ValueError(f"image index must be >= 0, got {index}")
        epoch, position = divmod(index, self.size)
        return int(self.permutation(epoch)[position])

"""Per-image randomness for augmentations: image i's parameters come from its own generator.

The train loop builds one `PerImageRandom` per step from (seed, step, global image indices), so an image is
augmented the same way whichever rank, batch size or accumulation micro-batch it lands in: with data parallelism
one step on N processes sees exactly the views one process would see with the same global batch.

The augmentation ops (`augment.ops`) accept either a plain `torch.Generator` (one draw per batch, as before) or a
`PerImageRandom`; they only ever ask for "the next uniform number of every image", so parameters are still
sampled as whole-batch vectors and applied as whole-batch tensor operations.

Example:
    >>> rng = PerImageRandom.for_images(seed=0, step=12, indices=[96, 97, 98])
    >>> rng.rand(3)           # Tensor[3]: the next uniform of images 96, 97 and 98
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

_CHUNK = 32  # uniforms drawn per image at a time (SimCLR's two views need 22)


class PerImageRandom:
    """Uniform numbers in [0, 1), one independent stream per image of a batch."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._drawn = torch.empty(len(self.generators), 0)
        self._next = 0

    @classmethod
    def for_images(cls, seed: int, step: int, indices: Sequence[int], salt: str = "augment") -> "PerImageRandom":
        """Randomness of images `indices` (global stream indices) at optimisation step `step` of run `seed`."""
        from synthsight.generators.base import image_seed  # lazily: generator families may use augment ops

        step_seed = image_seed(seed, step, f"{salt}/step")
        return cls([image_seed(step_seed, int(i), salt) for i in indices])

    def __len__(self) -> int:
        return len(self.generators)

    def rand(self, n: int) -> torch.Tensor:
        """The next uniform number of each image: Tensor[n] (n must equal the number of images)."""
        if n != len(self.generators):
            raise ValueError(f"asked for {n} numbers but this randomness belongs to {len(self.generators)} images")
        if n == 0:
            return torch.empty(0)
        if self._next == self._drawn.shape[1]:
            more = torch.stack([torch.rand(_CHUNK, generator=g) for g in self.generators])
            self._drawn = torch.cat([self._drawn, more], dim=1)
        out = self._drawn[:, self._next]
        self._next += 1
        return out


Randomness = Union[torch.Generator, PerImageRandom]


def rand(g: Randomness, n: int) -> torch.Tensor:
    """n uniform numbers, one per image: from a batch generator, or each from its image's own stream."""
    if isinstance(g, torch.Generator):
        return torch.rand(n, generator=g)
    return g.rand(n)

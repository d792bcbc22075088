"""The contract every procedural image family follows.

Randomness is split from rendering (as in kornia): `sample_params(rng)` draws one image's parameters from a
generator seeded by (family, seed, image index), and `render(params, device)` turns a list of them into a batch.
`image_params(seed, index)` gives what `generate` renders for one image: sample_params of its generator, plus
whatever a family takes from the index itself (`params_at`).
So image i of a stream is a pure function of (family, its config, seed, i), whatever the batch size, the
data-loader worker, the rank or the position in a resumed run.

Example:
    >>> gen = GENERATORS.create("dead_leaves", variant="mixed", size=64)
    >>> images = gen.generate(range(8), seed=0)   # Tensor[8, 3, 64, 64], float32 in [0, 1]
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar, Sequence

import torch

from synthsight.registry import unknown_name_message

_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One round of the SplitMix64 mixer: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def image_seed(seed: int, index: int, salt: str) -> int:
    """A 63-bit seed for image `index` of stream `seed`; `salt` keeps families (and uses) independent."""
    if index < 0:
        raise ValueError(f"image index must be >= 0, got {index}")
    h = splitmix64(zlib.crc32(salt.encode()) ^ splitmix64(seed & _MASK64))
    return splitmix64(h ^ index) >> 1


def image_rng(seed: int, index: int, salt: str) -> torch.Generator:
    """A CPU torch.Generator owned by one image, so its parameters do not depend on any other image."""
    return torch.Generator().manual_seed(image_seed(seed, index, salt))


def image_uniform(seed: int, index: int, salt: str) -> float:
    """One uniform number in [0, 1) for image `index`, without building a generator (used to pick families)."""
    return image_seed(seed, index, salt) / float(1 << 63)


class Generator:
    """Base class of a procedural family. Subclasses set `family`, `variants`, and implement the two methods."""

    family: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when the images a config produces change; provenance records it
    variants: ClassVar[tuple[str, ...]] = ()
    # Families with categories (fractal system, contour parameters, program id) set num_classes and put the
    # image's class in params["label"] (a 0-dim int64 tensor); the others leave it None.
    num_classes: int | None = None
    # Options the generator was created with by name (`create_generator`); recorded by config() for provenance.
    options: dict[str, Any] = {}

    def __init__(self, variant: str | None = None, size: int = 128) -> None:
        variant = variant or self.variants[0]
        if variant not in self.variants:
            raise ValueError(unknown_name_message(f"{self.family} variant", variant, list(self.variants)))
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"image size must be an integer >= 8 pixels, got {size!r}")
        self.variant = variant
        self.size = size

    @property
    def salt(self) -> str:
        return f"{self.family}/{self.variant}"

    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw the parameters of one image (CPU tensors) from `rng`."""
        raise NotImplementedError

    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Render a list of parameter sets into Tensor[B, 3, size, size], float32 in [0, 1], on `device`."""
        raise NotImplementedError

    def params_at(self, rng: torch.Generator, index: int) -> dict[str, Any]:
        """The parameters of image `index` of a stream, drawn from the image's own generator `rng`.

        sample_params(rng) for most families. A family whose images also depend on the index itself overrides it
        (stylegan_random: the network, index // images_per_network), and so does a family made of others (mix,
        which passes the index on to its components)."""
        return self.sample_params(rng)

    def image_params(self, seed: int, index: int) -> dict[str, Any]:
        """The parameters of image `index` of stream `seed`: what `generate` renders for it."""
        return self.params_at(image_rng(seed, index, self.salt), index)

    def generate(self, indices: Sequence[int], seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """Images `indices` of stream `seed`: Tensor[len(indices), 3, size, size] in [0, 1]."""
        return self.generate_with_labels(indices, seed, device)[0]

    def generate_with_labels(
        self, indices: Sequence[int], seed: int, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and their class labels (int64 Tensor[B]; -1 for families without categories)."""
        params = [self.image_params(seed, int(i)) for i in indices]
        labels = torch.tensor([int(p["label"]) if "label" in p else -1 for p in params], dtype=torch.long)
        if not params:
            return torch.empty(0, 3, self.size, self.size, device=device), labels
        return self.render(params, torch.device(device)), labels

    def config(self) -> dict[str, Any]:
        """What identifies this generator's output; recorded in manifests and provenance."""
        out = {"family": self.family, "variant": self.variant, "size": self.size, "version": self.version}
        return {**out, "options": dict(self.options)} if self.options else out

"""A seeded, sharded, resumable stream of procedural images.

Global batch b holds images [b * B * world, (b + 1) * B * world); rank r takes its contiguous slice of B. Each
image's family is chosen by a hash of (seed, index), so the stream is the same however it is split over ranks and
data-loader workers, and `start_batch` resumes it exactly.

Example:
    >>> stream = SyntheticStream([create_generator("dead_leaves", size=64)], seed=0, batch_size=32)
    >>> images, indices = next(iter(stream))     # Tensor[32, 3, 64, 64], Tensor[32]
"""

from __future__ import annotations

import bisect
import itertools
from typing import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from synthsight.generators.base import Generator, image_uniform


class SyntheticStream(IterableDataset):
    """Yields (images Tensor[B, 3, S, S] in [0, 1], image indices Tensor[B]) batches, forever or `num_batches`."""

    def __init__(
        self,
        generators: Sequence[Generator],
        seed: int,
        batch_size: int,
        weights: Sequence[float] | None = None,
        start_batch: int = 0,
        num_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not generators:
            raise ValueError("a stream needs at least one generator family")
        sizes = {g.size for g in generators}
        if len(sizes) != 1:
            raise ValueError(f"all families of a stream must render the same size, got {sorted(sizes)}")
        weights = list(weights) if weights is not None else [1.0] * len(generators)
        if len(weights) != len(generators) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be one non-negative number per family with a positive sum, got {weights}")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
        self.generators = list(generators)
        total = float(sum(weights))
        self._cumulative = list(itertools.accumulate(w / total for w in weights))
        self.seed, self.batch_size = seed, batch_size
        self.start_batch, self.num_batches = start_batch, num_batches
        self.rank, self.world_size = rank, world_size

    def indices_of_batch(self, b: int) -> range:
        """The image indices this rank renders for global batch `b`."""
        first = (b * self.world_size + self.rank) * self.batch_size
        return range(first, first + self.batch_size)

    def family_of(self, index: int) -> int:
        """Which generator renders image `index` (weighted, a pure function of seed and index)."""
        if len(self.generators) == 1:
            return 0
        u = image_uniform(self.seed, index, "stream/family")
        return min(bisect.bisect_right(self._cumulative, u), len(self.generators) - 1)

    def render(self, indices: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
        """Images `indices` of the stream, each rendered by its own family."""
        families = [self.family_of(i) for i in indices]
        size = self.generators[0].size
        out = torch.empty(len(indices), 3, size, size, device=device)
        for f, gen in enumerate(self.generators):
            rows = [k for k, fam in enumerate(families) if fam == f]
            if rows:
                out[rows] = gen.generate([indices[k] for k in rows], self.seed, device)
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stop = None if self.num_batches is None else self.start_batch + self.num_batches
        for b in itertools.count(self.start_batch + worker, workers):
            if stop is not None and b >= stop:
                return
            indices = self.indices_of_batch(b)
            yield self.render(indices), torch.tensor(list(indices), dtype=torch.long)

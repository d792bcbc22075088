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


def worker_batches(start_batch: int, num_batches: int | None) -> Iterator[int]:
    """The global batch numbers this data-loader worker renders (every one in the main process): workers take
    turns, so batches arrive in order whatever the number of workers; `num_batches` None = forever."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    stop = None if num_batches is None else start_batch + num_batches
    for b in itertools.count(start_batch + worker, workers):
        if stop is not None and b >= stop:
            return
        yield b


class SyntheticStream(IterableDataset):
    """Yields (images Tensor[B, 3, S, S] in [0, 1], image indices Tensor[B]) batches, forever or `num_batches`.

    With `with_labels=True` it yields (images, indices, labels Tensor[B] int64): the image's class within its
    family plus the family's offset (families stacked in order, `num_classes` in all). Every family must then have
    categories (`Generator.num_classes`), unless `allow_unlabelled`: images of families without them get -1.
    """

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
        with_labels: bool = False,
        allow_unlabelled: bool = False,
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
        self.with_labels = with_labels
        if with_labels and not allow_unlabelled:
            unlabelled = [f"{g.family}/{g.variant}" for g in self.generators if not g.num_classes]
            if unlabelled:
                raise ValueError(
                    f"class labels were asked for, but {', '.join(unlabelled)} has no categories; use families with "
                    "categories (fractal_ifs, contours, programs, or mix of them) or a self-supervised method"
                )
        sizes = [g.num_classes or 0 for g in self.generators]
        self.label_offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        self.num_classes = sum(sizes)

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
        return self.render_with_labels(indices, device)[0]

    def render_with_labels(
        self, indices: Sequence[int], device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `indices` and their stream-wide class labels (-1 where a family has no categories)."""
        families = [self.family_of(i) for i in indices]
        size = self.generators[0].size
        out = torch.empty(len(indices), 3, size, size, device=device)
        labels = torch.full((len(indices),), -1, dtype=torch.long)
        for f, gen in enumerate(self.generators):
            rows = [k for k, fam in enumerate(families) if fam == f]
            if rows:
                out[rows], fam_labels = gen.generate_with_labels([indices[k] for k in rows], self.seed, device)
                labels[rows] = torch.where(fam_labels >= 0, fam_labels + self.label_offsets[f], fam_labels)
        return out, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for b in worker_batches(self.start_batch, self.num_batches):
            indices = self.indices_of_batch(b)
            index_tensor = torch.tensor(list(indices), dtype=torch.long)
            if self.with_labels:
                images, labels = self.render_with_labels(indices)
                yield images, index_tensor, labels
            else:
                yield self.render(indices), index_tensor

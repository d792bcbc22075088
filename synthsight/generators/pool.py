"""A finite pool of procedural images (data.pool=N): a fixed data set of the stream's first N images, seen epoch
after epoch in a fresh order each time, rendered once and kept in memory.

The papers pretrain on fixed data sets (FractalDB-1k: 1M images; Baradad et al.: 105k-1.3M), while synthsight's
default is an endless stream of new images; the pool lets a study ask what the difference is worth (issue 12:
1k / 10k / 100k images against the stream), and it takes rendering out of the training loop after the first epoch.

Pool image j is image j of the underlying stream (family, label and pixels), stored as 8-bit pixels (as a data set
of PNG files would hold it: at most 1/510 from the stream's float image). Stream image i of the pooled stream is
pool image perm_e[i mod N] (generators/epochs.py), so the pooled stream is, like the others, a pure function of
(config, seed, i): resumable, and the same over ranks and workers. Each process (and each data-loader worker)
keeps its own cache of the images it has rendered: N x 3 x S^2 bytes at most (100k images at 64 px: 1.2 GB).

Example:
    >>> pooled = PooledStream(SyntheticStream(gens, seed=0, batch_size=256, with_labels=True), size=10_000)
    >>> images, indices, labels = next(iter(pooled))   # indices: pool images 0..9999
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset

from synthsight.generators.epochs import EpochOrder
from synthsight.generators.stream import SyntheticStream, worker_batches


class PooledStream(IterableDataset):
    """The SyntheticStream interface over a pool of the first `size` images of `stream` (its batching, start and
    rank settings are used; its images are rendered on first use and cached as uint8)."""

    def __init__(self, stream: SyntheticStream, size: int) -> None:
        if size < 1:
            raise ValueError(f"data.pool must be >= 1 image, got {size}")
        self.stream, self.size = stream, int(size)
        self.order = EpochOrder(stream.seed, self.size, "pool/epoch-permutation")
        self._pixels: torch.Tensor | None = None  # uint8 [size, 3, S, S], allocated on first use
        self._labels = torch.full((self.size,), -1, dtype=torch.long)
        self._done = torch.zeros(self.size, dtype=torch.bool)
        self.rendered = 0  # images rendered so far (each at most once)

    def __getattr__(self, name: str):  # seed, batch_size, generators, num_classes, with_labels, ... of the stream
        if name == "stream":
            raise AttributeError(name)
        return getattr(self.stream, name)

    def pool_index(self, index: int) -> int:
        """Which pool image (= image of the underlying stream) stream image `index` is."""
        return self.order.item(index)

    def family_of(self, index: int) -> int:
        return self.stream.family_of(self.pool_index(index))

    def indices_of_batch(self, b: int) -> range:
        return self.stream.indices_of_batch(b)

    def _fill(self, items: Sequence[int]) -> None:
        missing = sorted({j for j in items if not self._done[j]})
        if not missing:
            return
        images, labels = self.stream.render_with_labels(missing)
        if self._pixels is None:
            self._pixels = torch.empty(self.size, *images.shape[1:], dtype=torch.uint8)
        rows = torch.tensor(missing, dtype=torch.long)
        self._pixels[rows] = images.mul_(255.0).round_().to(torch.uint8)
        self._labels[rows] = labels
        self._done[rows] = True
        self.rendered += len(missing)

    def render_with_labels(self, indices: Sequence[int], device: str | torch.device = "cpu"
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `indices` of the pooled stream (float in [0, 1]) and their stream-wide labels."""
        return self._pool_images(torch.tensor([self.pool_index(i) for i in indices], dtype=torch.long), device)

    def _pool_images(self, items: torch.Tensor, device: str | torch.device = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool images `items` (rendered first where not yet cached) and their labels."""
        self._fill(items.tolist())
        return self._pixels[items].to(device).float().div_(255.0), self._labels[items]

    def render(self, indices: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
        return self.render_with_labels(indices, device)[0]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        s = self.stream
        for b in worker_batches(s.start_batch, s.num_batches):
            items = torch.tensor([self.pool_index(i) for i in s.indices_of_batch(b)], dtype=torch.long)
            images, labels = self._pool_images(items)
            yield (images, items, labels) if s.with_labels else (images, items)

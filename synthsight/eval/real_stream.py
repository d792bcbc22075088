"""A stream of real images with the same interface as SyntheticStream: the real-data reference for pretraining.

Image i of the stream is image perm_e[i mod N] of the data set, where e = i // N is the epoch and perm_e a
permutation seeded by (seed, e): every epoch visits each image once, in a fresh order. Like the synthetic stream,
image i is a pure function of (data set, seed, i), so the stream is the same however it is split over ranks and
data-loader workers, and `start_batch` resumes it exactly. Labels are never streamed (self-supervised only).

An ImageFolder (data.real=DIR) is read image by image as the stream reaches it (eval/image_folder.py): nothing is
decoded up front, so a folder of any size can be streamed. The other sources (Fashion-MNIST, CIFAR, STL-10, an .npz)
are arrays, loaded once at the render size.

Example:
    >>> stream = RealImageStream.from_spec("fashion-mnist", size=64, seed=0, batch_size=32)
    >>> images, indices = next(iter(stream))     # Tensor[32, 3, 64, 64] in [0, 1], Tensor[32]
"""

from __future__ import annotations

import functools
from typing import Iterator, Sequence

import torch
from torch.utils.data import IterableDataset

from synthsight.eval.data import image_folder_root, load_dataset
from synthsight.eval.image_folder import ImageFolder
from synthsight.generators.epochs import EpochOrder
from synthsight.generators.stream import worker_batches


@functools.lru_cache(maxsize=1)
def load_real_images(spec: str, size: int) -> tuple[torch.Tensor | ImageFolder, str]:
    """The training split of `spec` at `size` and the loader's description of the source: an ImageFolder (files
    listed, none decoded) for a folder of images, else uint8 Tensor[N, C, size, size] (C = 1 when the images are
    grey, so three copies are not kept). Cached: a benchmark or a run's provenance record loads it only once."""
    root = image_folder_root(spec)
    if root is not None:
        return ImageFolder(root, size), str(root)
    data = load_dataset(spec, "train", size=size)
    images = data.images
    if torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2]):
        images = images[:, :1].clone()
    return images, data.source


class RealImageStream(IterableDataset):
    """Yields (images Tensor[B, 3, S, S] in [0, 1], image indices Tensor[B]) batches, forever or `num_batches`.

    `images` is a uint8 Tensor[N, 1 or 3, S, S] (grey images are replicated to three channels when rendered) or an
    ImageFolder at side S, whose images are decoded when rendered. Global batch b holds stream indices [b * B * world, (b + 1) * B * world); rank r takes its slice of B.
    """

    with_labels = False  # labels of the real images are never used: the reference is self-supervised

    def __init__(
        self,
        images: torch.Tensor | ImageFolder,
        seed: int,
        batch_size: int,
        start_batch: int = 0,
        num_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        source: str = "real images",
    ) -> None:
        if isinstance(images, ImageFolder):
            if not len(images):
                raise ValueError(f"the image folder {images.root} holds no images; add images to its class folders")
        elif images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or not len(images):
            raise ValueError(f"images must be a non-empty uint8 Tensor[N, 1 or 3, S, S] or an ImageFolder, got "
                             f"{images.dtype} {tuple(images.shape)}")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
        self.images, self.source = images, source
        self.size = images.size if isinstance(images, ImageFolder) else images.shape[-1]
        self.seed, self.batch_size = seed, batch_size
        self.start_batch, self.num_batches = start_batch, num_batches
        self.rank, self.world_size = rank, world_size
        self._order = EpochOrder(seed, len(images), "real/epoch-permutation")

    @classmethod
    def from_spec(cls, spec: str, size: int, **kwargs) -> "RealImageStream":
        """The training split of any eval data spec ('fashion-mnist', an ImageFolder dir, an .npz) at `size`; a
        folder is decoded image by image as the stream reaches it."""
        images, source = load_real_images(spec, size)
        return cls(images, source=source, **kwargs)

    @property
    def num_images(self) -> int:
        """Images in one epoch: the data set's size (no __len__: the stream itself is endless)."""
        return len(self.images)

    def indices_of_batch(self, b: int) -> range:
        """The stream indices this rank loads for global batch `b`."""
        first = (b * self.world_size + self.rank) * self.batch_size
        return range(first, first + self.batch_size)

    def dataset_index(self, index: int) -> int:
        """Which data-set image stream image `index` is."""
        return self._order.item(index)

    def render(self, indices: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
        """Images `indices` of the stream as float Tensor[len, 3, S, S] in [0, 1]."""
        rows = [self.dataset_index(i) for i in indices]
        if isinstance(self.images, ImageFolder):  # one file opened per image, only now
            pixels = torch.empty(len(rows), 3, self.size, self.size, dtype=torch.uint8)
            for k, row in enumerate(rows):
                pixels[k] = self.images.image(row)
        else:
            pixels = self.images[torch.tensor(rows, dtype=torch.long)]
        out = pixels.to(device).float().div_(255)
        return out.expand(-1, 3, -1, -1).contiguous() if out.shape[1] == 1 else out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in worker_batches(self.start_batch, self.num_batches):
            indices = self.indices_of_batch(b)
            yield self.render(indices), torch.tensor(list(indices), dtype=torch.long)

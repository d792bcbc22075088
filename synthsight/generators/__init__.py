"""Procedural image families, one file each, registered by name in `GENERATORS`."""

from synthsight.generators import contours, dead_leaves, fractal_ifs, mix, programs, spectrum, statistical, stylegan_random  # noqa: F401  (registers the families)
from synthsight.generators.base import Generator, image_rng, image_seed
from synthsight.registry import GENERATORS

__all__ = ["GENERATORS", "Generator", "image_rng", "image_seed", "create_generator"]


def create_generator(family: str, variant: str | None = None, size: int = 128) -> Generator:
    """Build a registered family by name; an unknown name lists the valid ones."""
    return GENERATORS.create(family, variant=variant, size=size)

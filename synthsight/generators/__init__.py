"""Procedural image families, one file each, registered by name in `GENERATORS`."""

from __future__ import annotations

import inspect
from typing import Any

from synthsight.family_spec import FamilySpec, parse_family_spec
from synthsight.generators import contours, dead_leaves, fractal_ifs, mix, programs, spectrum, statistical, stylegan_random  # noqa: F401  (registers the families)
from synthsight.generators.base import Generator, image_rng, image_seed
from synthsight.registry import GENERATORS, unknown_name_message

__all__ = ["GENERATORS", "Generator", "image_rng", "image_seed", "create_generator", "generator_options",
           "FamilySpec"]


def generator_options(family: str) -> dict[str, Any]:
    """The options a family takes (constructor keywords beyond variant and size) with their defaults."""
    params = inspect.signature(GENERATORS.get(family).__init__).parameters
    return {name: p.default for name, p in params.items()
            if name not in ("self", "variant", "size") and p.kind is p.POSITIONAL_OR_KEYWORD}


def create_generator(family: str | dict | FamilySpec, variant: str | None = None, size: int = 128,
                     **options: Any) -> Generator:
    """Build a registered family by name, with its options; unknown names and options list the valid ones.

    `family` may be a full spec: 'fractal_ifs/fractaldb:num_classes=100', a mapping with `name:`, or a FamilySpec;
    `variant` and `options` given here take precedence over the spec's.

    Example:
        >>> gen = create_generator("fractal_ifs", "fractaldb", size=64, num_classes=100)
    """
    spec = parse_family_spec(family)
    variant = variant or spec.variant
    options = {**spec.options, **options}
    valid = generator_options(spec.family)
    for name in options:
        if name not in valid:
            raise ValueError(unknown_name_message(f"{spec.family} option", name, sorted(valid)))
    gen = GENERATORS.create(spec.family, variant=variant, size=size, **options)
    gen.options = dict(options)  # recorded by config(), hence in manifests and provenance
    return gen

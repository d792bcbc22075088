"""Pretraining methods, one file each, registered by name in `METHODS`."""

from synthsight.methods import simclr  # noqa: F401  (registers the method)
from synthsight.methods import byol, moco_v2, moco_v3, simsiam  # noqa: F401  (register "byol", "moco_v2", ...)
from synthsight.methods import dino  # noqa: F401  (registers "dino")
from synthsight.methods import supcon, supervised  # noqa: F401  (register "supcon" and "ce")
from synthsight.methods import data2vec, mae  # noqa: F401  (register "data2vec" and "mae": masked image modelling)
from synthsight.methods import distill  # noqa: F401  (registers "distill": a student taught by trained networks)
from synthsight.methods.base import Method, StepOutput
from synthsight.registry import METHODS

__all__ = ["METHODS", "Method", "StepOutput"]

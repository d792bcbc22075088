"""Pretraining methods, one file each, registered by name in `METHODS`."""

from synthsight.methods import simclr  # noqa: F401  (registers the method)
from synthsight.methods.base import Method, StepOutput
from synthsight.registry import METHODS

from synthsight.export import distill  # noqa: E402,F401  (registers "distill"; lives with export/)

__all__ = ["METHODS", "Method", "StepOutput"]

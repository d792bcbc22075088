"""The documented Python API (docs/API.md): the pieces a user's own code needs, importable from one place.

Example:
    >>> from synthsight.api import create_generator, SyntheticStream, load_backbone, load_dataset, knn_eval
"""

from synthsight.config import load_config
from synthsight.eval.data import load_dataset
from synthsight.eval.features import extract_features
from synthsight.eval.knn import knn_eval
from synthsight.eval.linear import linear_eval
from synthsight.eval.run import load_backbone, random_backbone
from synthsight.family_spec import FamilySpec, parse_family_spec
from synthsight.generators import GENERATORS, create_generator, generator_options
from synthsight.generators.stream import SyntheticStream
from synthsight.registry import BACKBONES, METHODS
from synthsight.runs import pretrain_run

__all__ = ["BACKBONES", "FamilySpec", "GENERATORS", "METHODS", "SyntheticStream", "create_generator",
           "extract_features", "generator_options", "knn_eval", "linear_eval", "load_backbone", "load_config",
           "load_dataset", "parse_family_spec", "pretrain_run", "random_backbone"]

"""synthsight: train vision backbones on procedurally generated images only, and measure them on real data."""

__version__ = "0.1.0"

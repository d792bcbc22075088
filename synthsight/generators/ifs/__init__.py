"""The parts of the `fractal_ifs` family: systems (categories and their search), the parallel chaos game and its
points-to-pixels helpers, and one painter per rendering style (Anderson & Farrell's colour, FractalDB's grey
stipple, a soft colour look). The family itself, with its options, is synthsight/generators/fractal_ifs.py."""

"""Studies: many pretraining runs at equal budgets, evaluated on real sets, with the gap closed per variation.

spec.py     the study file (YAML) -> a validated StudySpec -> the cells to run (pure)
budget.py   budgets in minutes or images -> steps (a speed probe for minutes), and the >10% over/under flag
stats.py    mean and 95% interval over seeds, gap closed G = (synthetic - random) / (real - random)
runner.py   runs the cells resumably (a finished cell is reused when its config hash matches)
results.py  results.csv, summary.csv / table.md and per_class.csv from the finished cells
cli.py      `synthsight study STUDY.yaml --out runs/study-NAME`
The page (report.html) and plots are in synthsight/report/study.py.
"""

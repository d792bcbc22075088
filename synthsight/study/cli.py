"""`synthsight study STUDY.yaml --out runs/study-NAME`: the parser and the command (registered in synthsight.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the command imports the study modules lazily, so --help stays fast
    from synthsight.study.spec import Plan, StudySpec

DESCRIPTION = (
    "Run a study: every variation of a base config x seeds x budgets, each pretrained at the same wall-clock (or "
    "images) budget, evaluated on the real sets, beside its real-data reference (the same recipe on the set's "
    "training images, labels unused) and random init, so the gap closed G = (synthetic - random) / (real - random) "
    "is computed inside the study. Writes results.csv, summary.csv, table.md (mean and 95% interval over seeds, "
    "G), paired.csv (each variation minus its reference and minus the baseline variation, seed by seed), "
    "per_class.csv, plots and report.html into --out. Resumable: run the same command again after a kill; "
    "finished cells are reused when their config hash matches. Study files: configs/studies/*.yaml "
    "(format in synthsight/study/spec.py and docs/TRANSFER.md).")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="many runs at equal budgets, evaluated on real sets, with the gap closed G",
                       description=DESCRIPTION)
    p.add_argument("study", type=Path, help="the study file (YAML), e.g. configs/studies/family_screen.yaml")
    p.add_argument("--out", type=Path, default=None, help="study folder (default runs/study-<name>)")
    p.add_argument("--plan", action="store_true",
                   help="print the cells (and which are already done) and the estimated time, run nothing")
    p.add_argument("--report", action="store_true", help="only rebuild the tables, plots and report.html")
    p.add_argument("--retry-failed", action="store_true", help="run again the cells that failed before")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--variations", default=None, metavar="NAME[,NAME]",
                   help="run (and --plan) only these variations' cells, with the references and random inits they "
                        "read; the tables still show every finished cell")
    p.add_argument("--seeds", default=None, metavar="S[,S]", help="run (and --plan) only these seeds' cells")


def _selection(args: argparse.Namespace, spec: StudySpec) -> tuple[list[str] | None, list[int] | None]:
    from synthsight.study.spec import StudyError, split_names

    names = split_names(args.variations, [v.name for v in spec.variations]) if args.variations else None
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise StudyError(f"--seeds must be integers separated by commas, e.g. --seeds 1,2; got {args.seeds!r}")
    return names, seeds


def describe_plan(spec: StudySpec, plan: Plan, out: Path, only=(None, None)) -> str:
    """The cells (those `only` selects), whether each is done, and a rough time: budgets (+ ~10% around each run)
    and ~1 min per eval."""
    from synthsight.study.runner import _json, cell_dir
    from synthsight.study.spec import select

    lines, minutes = [], 0.0
    cells = select(plan, *only)
    for c in cells:
        done = (_json(cell_dir(out, c) / "cell.json") or {}).get("status") == "done"
        budget = c.budget.label if c.budget else "-"
        lines.append(f"  {'done ' if done else 'to do'}  {c.kind:9s} {c.variation[:40]:40s} seed {c.seed:<3d} "
                     f"{budget:>14s}  eval on {', '.join(c.sets)}  [{c.key}]")
        if not done:
            minutes += (1.1 * c.budget.value if c.budget and c.budget.unit == "minutes" else 0) + len(c.sets)
    todo = sum(1 for line in lines if "to do" in line)
    lines.append(f"{len(cells)} cells, {todo} to do: ~{minutes:.0f} min (budgets + ~1 min per evaluation; "
                 "images budgets not counted)")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def cmd_study(args: argparse.Namespace) -> Path:
    from synthsight.study.results import write_results
    from synthsight.study.runner import run_study
    from synthsight.study.spec import expand, load_study, slug

    spec = load_study(args.study)
    out = args.out or Path("runs") / f"study-{slug(spec.name)}"
    only = _selection(args, spec)
    if args.plan:
        print(describe_plan(spec, expand(spec), out, only))
        return out
    if args.report:
        if not out.is_dir():
            raise FileNotFoundError(f"study folder {out} does not exist; run the study first")
        print(f"report: {write_results(spec, expand(spec), out, report=True)}")
        return out
    run_study(spec, out, progress=not args.no_progress, retry_failed=args.retry_failed, only=only)
    print((out / "table.md").read_text())
    print(f"study folder: {out}\nreport: {out / 'report.html'}")
    return out

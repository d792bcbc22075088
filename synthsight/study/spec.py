"""The study file: a base config, variations, seeds, budgets and real sets -> the cells to run.

A study file (YAML; examples in configs/studies/):

    name: family-screen                    # default: the file's stem
    description: each family alone at a short budget
    base:
      preset: demo                         # a preset in configs/ or a YAML path
      overrides: [trainer.workers=1]       # dotted KEY=VALUE strings, or a mapping {key: value}
    budget: {minutes: 5}                   # per run; a list ({minutes: [5, 10, 20]}) makes it an axis; or {images: N}
    seeds: [0, 1]
    eval:
      protocols: [knn, linear]
      sets:                                # name -> data (+ test_data, limit, test_limit, size)
        fashion-mnist: {data: fashion-mnist, limit: 20000}
        photos: {data: photos}
    reference: true                        # per variation, the same recipe on each set's training images
    random_init: true                      # random init of each architecture and seed, evaluated on every set
    schedule: time                         # minutes budgets: each run trains for its minutes, its schedule follows
                                           # the clock (trainer.minutes); `steps`: planned steps (+ re-plan)
    probe: {warmup: 8, steps: 30, replan_at: 0.1}   # minutes budgets: speed probe (plans the step cap); with
                                                    # schedule: steps, re-plan after 10% of the steps
    variations:                            # a list of {name, set: {dotted key: value}} ...
      - {name: dead leaves, set: {data.families: [dead_leaves/mixed]}}
      - {name: byol, set: {method: byol}, reference: false}   # a variation's own switch for its references
    grid:                                  # ... and/or a grid: every combination (crossed with the list)
      model.width: [32, 64]

Cells: one synthetic run per variation x budget x seed, evaluated on every set; one real-data reference run per
variation x set x budget x seed (data.real = the set's training images, labels unused; none for methods that
need labels), evaluated on that set; one random init per architecture x seed. A cell's key is a hash of
everything that determines its result (its config without the steps the budget sets, its budget and kind), so
identical cells (e.g. the references of variations that differ only in their families) run once, and a changed
study reuses exactly the cells whose key did not change.

Example:
    >>> spec = load_study(Path("configs/studies/family_screen.yaml"))
    >>> plan = expand(spec)
    >>> len(plan.cells), plan.uses[0]
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthsight.config import Config, apply_overrides, config_from_dict, read_preset
from synthsight.methods import METHODS  # importing the package registers every method

KINDS = ("synthetic", "real", "random")
SCHEDULES = ("time", "steps")  # how a minutes budget is kept (StudySpec.schedule)
# Set by the harness from the budget, so they are left out of a cell's key (the budget is in it instead).
STEP_KEYS = ("steps", "warmup_steps", "checkpoint_every", "minutes")
# Config keys added after studies had run, at the value that reproduces what ran before them: left out of a cell's
# key at that value, so finished cells stay valid when a later version adds an option.
LATER_KEYS = {"data": {"echo": 1, "pool": None}, "views": {"blur_p": 0.0, "blur_sigma": [0.1, 2.0]}}
TOP_KEYS = ("name", "description", "base", "budget", "seeds", "eval", "reference", "random_init", "variations",
            "grid", "probe", "checkpoints", "eval_threads", "baseline", "schedule")


class StudyError(ValueError):
    """A study file that cannot be run; the message names the key and the fix."""


@dataclass(frozen=True)
class Budget:
    unit: str  # minutes | images
    value: float  # training wall-clock minutes, or images seen (steps x global batch)

    @property
    def seconds(self) -> float | None:
        return 60.0 * self.value if self.unit == "minutes" else None

    @property
    def label(self) -> str:
        return f"{self.value:g} min" if self.unit == "minutes" else f"{int(self.value)} images"

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "value": self.value}


def budget_label(row: dict[str, Any]) -> str:
    """A table row's budget cells (budget_unit, budget) as every study table prints them, Budget.label ("30 min",
    "332800 images"), as the plan and the run log do; "" for random init, which has none."""
    return "" if row["budget"] in (None, "") else Budget(row["budget_unit"], float(row["budget"])).label


@dataclass(frozen=True)
class EvalSet:
    name: str  # the name in tables and folders
    data: str  # training split spec (eval.data), also the real-data reference's images (data.real)
    test_data: str  # test split spec
    limit: int | None = None  # stratified subset of the training split
    test_limit: int | None = None
    size: int | None = None  # image side for evaluation; None = the run's views.size


@dataclass
class Variation:
    name: str
    overrides: dict[str, Any]  # dotted key -> value
    reference: bool | None = None  # this variation's own real-data references; None: the study's `reference`


@dataclass
class StudySpec:
    name: str
    description: str
    preset: str | None
    base_overrides: list[str]  # dotted KEY=VALUE, applied before every variation's own
    variations: list[Variation]
    seeds: list[int]
    budgets: list[Budget]
    sets: list[EvalSet]
    protocols: list[str]
    reference: bool = True  # real-data reference runs (same recipe on each set's training images)
    random_init: bool = True  # random init baselines
    probe_warmup: int = 8  # untimed steps of a speed probe (minutes budgets only)
    probe_steps: int = 30  # timed steps of a speed probe (~5 s of the demo recipe)
    # minutes budgets: the run pauses after this fraction of its planned steps and re-plans its total at the speed it
    # measured itself (the host's speed drifts 1.3x within an hour; a probe or an earlier run cannot know); 0 = off
    replan_at: float = 0.1
    # minutes budgets: "time" trains each run for its minutes with the schedule following the clock (trainer.minutes;
    # the planned steps only bound it); "steps" trains the planned steps, re-planned at replan_at (sessions 6-9)
    schedule: str = "time"
    checkpoints: int = 4  # checkpoints per run (resume points); one is always written at the end
    eval_threads: int = 0  # torch threads for evaluation; 0 = all cores (no generation worker runs then)
    baseline: str = ""  # the variation per-class differences are taken against (default: the first)
    source: dict[str, Any] = field(default_factory=dict)  # the study file as read, for the record


@dataclass
class Cell:
    """One run (or, for kind random, one random initialisation) and the sets it is evaluated on."""

    key: str  # hash of what determines the result; the run folder ends with it
    kind: str  # synthetic | real | random
    variation: str  # the first variation that asked for it (labels the folder)
    seed: int
    budget: Budget | None  # None for random init
    config: dict[str, Any]  # the run config before the harness sets trainer.steps / warmup / checkpoints
    sets: list[str]  # names of the EvalSets it is evaluated on
    real_set: str | None = None  # kind real: the set whose training images it pretrains on

    @property
    def folder(self) -> str:
        budget = "" if self.budget is None else "-" + slug(self.budget.label)
        real = f"-{slug(self.real_set)}" if self.real_set else ""
        return f"{self.kind}{real}-{slug(self.variation)}-s{self.seed}{budget}-{self.key}"


@dataclass(frozen=True)
class Use:
    """A result the tables need: variation x kind x seed x budget x set, read from cell `key`."""

    variation: str
    kind: str
    seed: int
    budget: Budget | None
    eval_set: str
    key: str


@dataclass
class Plan:
    cells: list[Cell]  # unique by key, in running order
    uses: list[Use]
    notes: list[str]  # e.g. references left out for methods that need labels

    def cell(self, key: str) -> Cell:
        return next(c for c in self.cells if c.key == key)


# ------------------------------------------------------------------------------------------------ parsing


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_")[:40] or "x"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _overrides(value: Any, where: str) -> list[str]:
    """A list of KEY=VALUE strings, or a mapping {dotted key: value}, as KEY=VALUE strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return list(value)
    raise StudyError(f"{where} must be a list of KEY=VALUE strings or a mapping {{key: value}}, got {value!r}")


def _budgets(raw: Any) -> list[Budget]:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("minutes", "images"):
        raise StudyError(f"budget must be {{minutes: M}} or {{images: N}} (a number or a list), got {raw!r}")
    unit, values = next(iter(raw.items()))
    out = []
    for v in _as_list(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise StudyError(f"budget.{unit} values must be positive numbers, got {v!r}")
        out.append(Budget(unit, float(v)))
    if len(set(out)) != len(out):
        raise StudyError(f"budget.{unit} lists a value twice: {values}")
    return out


def _sets(raw: Any) -> tuple[list[EvalSet], list[str]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("sets"), dict) or not raw["sets"]:
        raise StudyError("eval.sets must map set names to {data: SPEC, ...}, e.g. "
                         "eval: {sets: {fashion-mnist: {data: fashion-mnist}}}")
    known = {"data", "test_data", "limit", "test_limit", "size"}
    sets = []
    for name, body in raw["sets"].items():
        body = {"data": body} if isinstance(body, str) else body
        if not isinstance(body, dict) or "data" not in body or set(body) - known:
            raise StudyError(f"eval.sets.{name} must be a data spec or a mapping with data (and optionally "
                             f"{', '.join(sorted(known - {'data'}))}), got {body!r}")
        sets.append(EvalSet(str(name), str(body["data"]), str(body.get("test_data", body["data"])),
                            body.get("limit"), body.get("test_limit"), body.get("size")))
    protocols = [str(p) for p in _as_list(raw.get("protocols", ["knn", "linear"]))]
    from synthsight.eval.protocols import check_protocols

    check_protocols(protocols)
    return sets, protocols


def _label(key: str, value: Any) -> str:
    short = key.split(".")[-1]
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{short}={text}"


def _variations(data: dict[str, Any]) -> list[Variation]:
    listed = []
    for i, item in enumerate(data.get("variations") or []):
        if not isinstance(item, dict) or set(item) - {"name", "set", "reference"}:
            raise StudyError(f"variations[{i}] must be {{name: ..., set: {{dotted key: value}}, reference: true|false}}"
                             f", got {item!r}")
        body = item.get("set") or {}
        if not isinstance(body, dict):
            raise StudyError(f"variations[{i}].set must be a mapping {{dotted key: value}}, got {body!r}")
        reference = item.get("reference")
        if reference is not None and not isinstance(reference, bool):
            raise StudyError(f"variations[{i}].reference must be true or false, got {reference!r}")
        listed.append(Variation(str(item.get("name") or ", ".join(_label(k, v) for k, v in body.items())
                                    or f"variation {i}"), dict(body), reference))
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise StudyError(f"grid must map dotted keys to non-empty lists of values, got {grid!r}")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    if not combos:
        out = listed or [Variation("base", {})]
    elif not listed:
        out = [Variation(", ".join(_label(k, v) for k, v in c.items()), c) for c in combos]
    else:
        out = [Variation(f"{v.name}, " + ", ".join(_label(k, x) for k, x in c.items()), {**v.overrides, **c},
                         v.reference) for v in listed for c in combos]
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise StudyError(f"variation names must be unique: {names}")
    return out


def parse_study(data: dict[str, Any], name: str = "study") -> StudySpec:
    """A StudySpec from the study file's mapping; every problem is a StudyError naming the key."""
    if not isinstance(data, dict):
        raise StudyError(f"a study file must hold a mapping with keys such as {', '.join(TOP_KEYS[:6])}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise StudyError(f"unknown study key(s) {unknown}; valid keys: {', '.join(TOP_KEYS)}")
    base = data.get("base") or {}
    if not isinstance(base, dict) or set(base) - {"preset", "overrides"}:
        raise StudyError(f"base must be {{preset: NAME, overrides: [...]}}, got {base!r}")
    if "budget" not in data:
        raise StudyError("budget is missing: give {minutes: M} or {images: N} per run")
    seeds = _as_list(data.get("seeds", [0]))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) < len(
            seeds):
        raise StudyError(f"seeds must be a list of distinct integers, got {data.get('seeds')!r}")
    sets, protocols = _sets(data.get("eval"))
    probe = data.get("probe") or {}
    spec = StudySpec(
        name=str(data.get("name") or name), description=str(data.get("description") or ""),
        preset=base.get("preset", "demo"), base_overrides=_overrides(base.get("overrides"), "base.overrides"),
        variations=_variations(data), seeds=seeds, budgets=_budgets(data["budget"]), sets=sets,
        protocols=protocols, reference=bool(data.get("reference", True)),
        random_init=bool(data.get("random_init", True)), probe_warmup=int(probe.get("warmup", 8)),
        probe_steps=int(probe.get("steps", 30)), replan_at=float(probe.get("replan_at", 0.1)),
        schedule=str(data.get("schedule", "time")),
        checkpoints=int(data.get("checkpoints", 4)),
        eval_threads=int(data.get("eval_threads", 0)), source=copy.deepcopy(data),
    )
    spec.baseline = str(data.get("baseline") or spec.variations[0].name)
    if spec.baseline not in [v.name for v in spec.variations]:
        raise StudyError(f"baseline {spec.baseline!r} is not a variation; variations: "
                         f"{', '.join(v.name for v in spec.variations)}")
    if spec.probe_steps < 1 or spec.probe_warmup < 0 or spec.checkpoints < 1 or spec.eval_threads < 0:
        raise StudyError("need probe.steps >= 1, probe.warmup >= 0, checkpoints >= 1 and eval_threads >= 0")
    if spec.schedule not in SCHEDULES:
        raise StudyError(f"schedule must be one of {', '.join(SCHEDULES)} (time: each run trains for its minutes; "
                         f"steps: the planned steps), got {spec.schedule!r}")
    if not 0 <= spec.replan_at < 0.5:
        raise StudyError(f"probe.replan_at must be in [0, 0.5) (a fraction of the planned steps; 0 turns re-planning "
                         f"off), got {spec.replan_at}")
    return spec


def load_study(path: Path) -> StudySpec:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} does not exist (examples: configs/studies/*.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyError(f"{path} is not valid YAML: {err}") from err
    return parse_study(data, path.stem)


# ---------------------------------------------------------------------------------------------- expansion


def cell_key(kind: str, config: dict[str, Any], budget: Budget | None) -> str:
    """10 hex digits of SHA-256 over what determines a cell's result (see the module doc)."""
    cfg = copy.deepcopy(config)
    cfg.pop("eval", None)  # evaluation settings are the evaluation's own (its folder records them)
    for k in STEP_KEYS:
        cfg.get("trainer", {}).pop(k, None)
    for section, keys in LATER_KEYS.items():
        for k, neutral in keys.items():
            value = cfg.get(section, {}).get(k, neutral)
            if (list(value) if isinstance(value, tuple) else value) == neutral:
                cfg.get(section, {}).pop(k, None)
    if kind == "random":  # only the architecture and its initialisation seed matter
        cfg = {"model": cfg["model"], "image_size": cfg["views"]["size"], "seed": cfg["trainer"]["seed"]}
    text = json.dumps({"kind": kind, "config": cfg, "budget": budget.to_dict() if budget else None},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def variation_config(spec: StudySpec, variation: Variation, seed: int, extra: list[str] = ()) -> Config:
    """The base preset, the study's base overrides, the variation's, the seed, then `extra`; validated."""
    values = read_preset(spec.preset) if spec.preset else {}
    overrides = [*spec.base_overrides, *(f"{k}={json.dumps(v)}" for k, v in variation.overrides.items()),
                 f"trainer.seed={seed}", f"data.seed={seed}", *extra]
    try:
        return config_from_dict(apply_overrides(values, overrides))
    except ValueError as err:
        raise StudyError(f"variation {variation.name!r}: {err}") from err


def expand(spec: StudySpec) -> Plan:
    """Every cell (unique by key) in running order, and every result the tables read.

    Order: random inits first (seconds), then seed by seed and budget by budget, each variation's synthetic run
    followed by its references, so a study stopped early has whole seeds to show.
    """
    cells: dict[str, Cell] = {}
    uses: list[Use] = []
    notes: list[str] = []
    base_data = variation_config(spec, Variation("base", {}), 0).data

    def add(cell: Cell) -> str:
        if cell.key not in cells:
            cells[cell.key] = cell
        else:
            merged = cells[cell.key].sets + [s for s in cell.sets if s not in cells[cell.key].sets]
            cells[cell.key].sets = merged
        return cell.key

    all_sets = [s.name for s in spec.sets]
    randoms: list[tuple[str, Use]] = []
    for seed in spec.seeds:
        for variation in spec.variations:
            cfg = variation_config(spec, variation, seed)
            if spec.random_init:
                key = cell_key("random", cfg.to_dict(), None)
                randoms.append((key, Cell(key, "random", variation.name, seed, None, cfg.to_dict(), list(all_sets))))
                uses += [Use(variation.name, "random", seed, None, s, key) for s in all_sets]
    for key, cell in randoms:
        add(cell)
    for seed in spec.seeds:
        for budget in spec.budgets:
            for variation in spec.variations:
                cfg = variation_config(spec, variation, seed)
                key = add(Cell(cell_key("synthetic", cfg.to_dict(), budget), "synthetic", variation.name, seed,
                               budget, cfg.to_dict(), list(all_sets)))
                uses += [Use(variation.name, "synthetic", seed, budget, s, key) for s in all_sets]
                if not (spec.reference if variation.reference is None else variation.reference):
                    if spec.reference:
                        note = (f"{variation.name}: no real-data reference (reference: false in the study file); "
                                "G is n/a")
                        if note not in notes:
                            notes.append(note)
                    continue
                method_cls = METHODS.get(cfg.method["name"])
                if method_cls.needs_labels and not method_cls.partial_labels:
                    note = (f"{variation.name}: no real-data reference ({cfg.method['name']} trains on class labels, "
                            "real images are streamed without them); G is n/a")
                    if note not in notes:
                        notes.append(note)
                    continue
                for s in spec.sets:
                    # families do not matter on real images: reset them, so such references are shared; a finite
                    # pool of formula images and echoing (which amortises rendering) are options of the formula
                    # stream, so the reference reads the set's own images afresh at every step
                    real = variation_config(spec, variation, seed, [
                        f"data.real={json.dumps(s.data)}", f"data.families={json.dumps(base_data.families)}",
                        f"data.weights={json.dumps(base_data.weights)}", "data.match=null",
                        "data.match_families=null", "data.pool=null", "data.echo=1"])
                    rkey = add(Cell(cell_key("real", real.to_dict(), budget), "real", variation.name, seed, budget,
                                    real.to_dict(), [s.name], real_set=s.name))
                    uses.append(Use(variation.name, "real", seed, budget, s.name, rkey))
    return Plan(list(cells.values()), uses, notes)


def split_names(text: str, known: list[str]) -> list[str]:
    """The variation names in a comma-separated --variations value. Names may hold commas themselves (a grid's
    names do: "demo, crop_scale_min=0.08"), so at each position the longest run of comma-separated parts that is a
    known name is taken; a part that starts no known name stays on its own (select() then names it as unknown).

    Example: split_names("a, x=1,b", ["a, x=1", "b"]) -> ["a, x=1", "b"]
    """
    spaced = {re.sub(r"\s*,\s*", ", ", k.strip()): k for k in known}  # "a,b" and "a, b" are one name
    parts = [p.strip() for p in text.split(",")]
    names, i = [], 0
    while i < len(parts):
        end = next((j for j in range(len(parts), i, -1) if ", ".join(parts[i:j]) in spaced), i + 1)
        joined = ", ".join(parts[i:end])
        names.append(spaced.get(joined, joined))
        i = end
    return names


def select(plan: Plan, variations: list[str] | None = None, seeds: list[int] | None = None) -> list[Cell]:
    """The plan's cells that some result of the named variations and seeds reads (in running order); a cell shared
    between variations (a real-data reference, a random init) is selected when any of them is. None selects all.

    Example: select(expand(spec), ["pool 10k"], [1]) -> that variation's seed-1 run, its references, its random init.
    """
    known = list(dict.fromkeys(u.variation for u in plan.uses))
    unknown = [v for v in variations or [] if v not in known]
    if unknown:
        raise StudyError(f"--variations: no variation named {', '.join(map(repr, unknown))}; the study has: "
                         f"{', '.join(map(repr, known))}")
    all_seeds = sorted({u.seed for u in plan.uses})
    missing = [s for s in seeds or [] if s not in all_seeds]
    if missing:
        raise StudyError(f"--seeds: the study has no seed {', '.join(map(str, missing))}; its seeds: "
                         f"{', '.join(map(str, all_seeds))}")
    keys = {u.key for u in plan.uses if (variations is None or u.variation in variations)
            and (seeds is None or u.seed in seeds)}
    return [c for c in plan.cells if c.key in keys]

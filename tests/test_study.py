"""The study harness: spec parsing and expansion, cell keys, budgets, statistics, and tiny end-to-end studies
(images budgets of a few steps, a 3-class .npz as the real set) that are resumed, changed and killed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from synthsight.cli import main
from synthsight.study.budget import budget_flag, calibrated_rate, log_seconds, schedule_overrides, steps_for_images
from synthsight.study.results import (collect_rows, markdown_paired, markdown_table, paired_rows, per_class_from_table,
                                      summarize)
from synthsight.study.runner import run_study
from synthsight.study.spec import (Budget, StudyError, cell_key, expand, load_study, parse_study, select,
                                   split_names)
from synthsight.study.stats import gap_closed, mean_ci, paired_difference
from tests.conftest import TINY

TINY_BASE = [o for o in TINY if not o.startswith(("trainer.steps", "trainer.warmup_steps", "trainer.checkpoint"))]


@pytest.fixture
def real_set(tmp_path: Path) -> Path:
    """A 3-class colour .npz: 60 images of 16 px, each class tinted by one channel."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = (rng.random((60, 16, 16, 3)) * 80).astype(np.uint8)
    for c in range(3):
        images[labels == c, :, :, c] += 120
    path = tmp_path / "tiny.npz"
    np.savez(path, images=images, labels=labels)
    return path


def study(real: Path, **changes) -> dict:
    data = {
        "name": "tiny",
        "base": {"preset": "demo", "overrides": TINY_BASE},
        "budget": {"images": 64},
        "seeds": [0],
        "eval": {"protocols": ["knn"], "sets": {"tiny": {"data": str(real)}}},
        "variations": [{"name": "dead leaves", "set": {"data.families": ["dead_leaves/mixed"]}},
                       # a mapping entry with an option, as a study file writes a family's options
                       {"name": "spectrum", "set": {"data.families": [{"name": "spectrum/color",
                                                                        "anisotropy_std": 0.05}]}}],
    }
    data.update(changes)
    return data


# ------------------------------------------------------------------------------------------- pure parts


def test_expand_counts_and_shares_cells(tmp_path: Path) -> None:
    spec = parse_study(study(tmp_path / "x.npz", seeds=[0, 1], budget={"images": [64, 128]}))
    plan = expand(spec)
    kinds = [c.kind for c in plan.cells]
    # random init: one per architecture x seed (both variations share it); references: families do not matter
    # on real images, so both variations share one per seed x budget
    assert (kinds.count("random"), kinds.count("synthetic"), kinds.count("real")) == (2, 8, 4)
    assert kinds[:2] == ["random", "random"]  # random inits first
    assert len(plan.uses) == 2 * 2 + 8 + 8  # random and real uses exist per variation
    shared = {u.key for u in plan.uses if u.kind == "real" and u.seed == 0 and u.budget == Budget("images", 64)}
    assert len(shared) == 1


def test_select_keeps_the_references_and_random_inits_a_variation_reads(tmp_path: Path) -> None:
    plan = expand(parse_study(study(tmp_path / "x.npz", seeds=[0, 1])))
    cells = select(plan, ["spectrum"], [1])
    # spectrum's seed-1 run, the seed-1 reference it shares with dead leaves (listed under dead leaves, the first
    # variation to need it), and the seed-1 random init
    assert [(c.kind, c.seed) for c in cells] == [("random", 1), ("real", 1), ("synthetic", 1)]
    assert [c.variation for c in cells if c.kind == "synthetic"] == ["spectrum"]
    assert select(plan) == plan.cells and len(select(plan, None, [0])) == len(plan.cells) // 2
    with pytest.raises(StudyError, match="no variation named 'spectrun'.*'spectrum'"):
        select(plan, ["spectrun"])
    with pytest.raises(StudyError, match="no seed 5"):
        select(plan, None, [5])


def test_references_read_real_images_without_the_formula_stream_options(tmp_path: Path) -> None:
    data = study(tmp_path / "x.npz")
    data["variations"].append({"name": "pool", "set": {"data.pool": 100, "data.echo": 4}})
    plan = expand(parse_study(data))
    pooled = [c for c in plan.cells if c.variation == "pool" and c.kind == "synthetic"]
    assert pooled[0].config["data"]["pool"] == 100 and pooled[0].config["data"]["echo"] == 4
    real = [c for c in plan.cells if c.kind == "real"]
    # the pool's reference is the stream variations' reference: one real run per seed x budget x set
    assert len(real) == 1 and real[0].config["data"]["pool"] is None and real[0].config["data"]["echo"] == 1
    assert {u.key for u in plan.uses if u.kind == "real" and u.variation == "pool"} == {real[0].key}


def test_expand_width_grid_supervised_method_and_no_baselines(tmp_path: Path) -> None:
    data = study(tmp_path / "x.npz", grid={"model.width": [4, 8]})
    data["variations"].append({"name": "ce", "set": {"method": "ce", "data.families": ["contours/rcdb"]}})
    data["variations"].append({"name": "supcon", "set": {"method": "supcon", "data.families": ["contours/rcdb"],
                                                         "method.proj_hidden": 32, "method.proj_dim": 16}})
    spec = parse_study(data)
    assert [v.name for v in spec.variations][:2] == ["dead leaves, width=4", "dead leaves, width=8"]
    plan = expand(spec)
    assert sum(c.kind == "random" for c in plan.cells) == 2  # one per width; the method does not matter
    assert not any(c.kind == "real" and c.variation.startswith("ce") for c in plan.cells)
    assert any("ce" in n and "class labels" in n for n in plan.notes)
    assert any(c.kind == "real" and c.variation.startswith("supcon") for c in plan.cells)  # SimCLR on real images
    bare = expand(parse_study(study(tmp_path / "x.npz", reference=False, random_init=False)))
    assert {c.kind for c in bare.cells} == {"synthetic"}


def test_a_variation_switches_its_own_references(tmp_path: Path) -> None:
    data = study(tmp_path / "x.npz", random_init=False)
    data["variations"][0]["set"]["method.temperature"] = 0.2  # dead leaves and spectrum no longer share a reference
    data["variations"][1]["reference"] = False
    plan = expand(parse_study(data))
    assert [c.variation for c in plan.cells if c.kind == "real"] == ["dead leaves"]
    assert any("spectrum" in n and "reference: false" in n for n in plan.notes)
    # the other way round: a study without references, one variation asking for its own
    data.update(reference=False)
    data["variations"][1]["reference"] = True
    assert [c.variation for c in expand(parse_study(data)).cells if c.kind == "real"] == ["spectrum"]
    with pytest.raises(StudyError, match=r"variations\[1\].reference must be true or false"):
        data["variations"][1]["reference"] = "no"
        parse_study(data)


def test_cell_key_ignores_steps_and_follows_everything_else(tmp_path: Path) -> None:
    spec = parse_study(study(tmp_path / "x.npz"))
    cfg = expand(spec).cells[1].config
    b = Budget("images", 64)
    moved = json.loads(json.dumps(cfg))
    moved["trainer"]["steps"] = 999
    moved["trainer"]["warmup_steps"] = 7
    moved["eval"]["limit"] = 5
    assert cell_key("synthetic", cfg, b) == cell_key("synthetic", moved, b)
    moved["trainer"]["lr"] = 0.1
    assert cell_key("synthetic", cfg, b) != cell_key("synthetic", moved, b)
    assert cell_key("synthetic", cfg, b) != cell_key("synthetic", cfg, Budget("images", 65))
    assert cell_key("synthetic", cfg, b) != cell_key("real", cfg, b)
    older = json.loads(json.dumps(cfg))  # a config from before data.echo / data.pool / the blur view existed
    for section, keys in (("data", ("echo", "pool")), ("views", ("blur_p", "blur_sigma"))):
        for k in keys:
            older[section].pop(k)
    assert cell_key("synthetic", cfg, b) == cell_key("synthetic", older, b)  # finished cells stay valid
    echoed = json.loads(json.dumps(cfg))
    echoed["data"]["echo"] = 4
    assert cell_key("synthetic", cfg, b) != cell_key("synthetic", echoed, b)
    moved = json.loads(json.dumps(cfg))
    moved["method"] = {"name": "byol"}
    assert cell_key("random", cfg, None) == cell_key("random", moved, None)


def test_study_file_errors_name_the_key(tmp_path: Path) -> None:
    real = tmp_path / "x.npz"
    with pytest.raises(StudyError, match="unknown study key"):
        parse_study(study(real, seeds_=[0]))
    with pytest.raises(StudyError, match="budget must be"):
        parse_study(study(real, budget={"hours": 1}))
    with pytest.raises(StudyError, match="positive"):
        parse_study(study(real, budget={"minutes": [5, -1]}))
    with pytest.raises(StudyError, match="eval.sets"):
        parse_study(study(real, eval={"sets": {}}))
    with pytest.raises(StudyError, match="distinct integers"):
        parse_study(study(real, seeds=[0, 0]))
    with pytest.raises(StudyError, match="baseline"):
        parse_study(study(real, baseline="nope"))
    with pytest.raises(StudyError, match="schedule must be one of time, steps"):
        parse_study(study(real, schedule="clock"))
    bad = study(real, variations=[{"name": "typo", "set": {"trainer.lrr": 1}}])
    with pytest.raises(StudyError, match="variation 'typo'.*trainer.lrr"):
        expand(parse_study(bad))
    with pytest.raises(ValueError, match="unknown protocol"):
        parse_study(study(real, eval={"protocols": ["knnn"], "sets": {"x": "fashion-mnist"}}))


def test_mean_ci_and_gap_closed() -> None:
    mean, half = mean_ci([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(4.302653 * 0.02 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2) x sd / sqrt(n)
    assert mean_ci([0.5]) == (0.5, None)
    assert gap_closed(0.80, 0.90, 0.70) == pytest.approx(0.5)
    assert gap_closed(0.95, 0.90, 0.70) == pytest.approx(1.25)
    assert gap_closed(0.80, 0.703, 0.70) is None  # real within noise of random: no ratio


def test_paired_difference_pairs_seeds_not_positions() -> None:
    # the reference ran seeds 0, 1, 2 and 5; the variation 2, 1, 0 (a resumed study wrote them in another order)
    runs = {2: 0.86, 1: 0.85, 0: 0.84}
    ref = {0: 0.83, 1: 0.845, 2: 0.85, 5: 0.10}
    d = paired_difference(runs, ref)
    assert d["per_seed"] == pytest.approx({0: 0.01, 1: 0.005, 2: 0.01}) and d["n_seeds"] == 3
    assert d["mean"] == pytest.approx(0.025 / 3)
    sd = ((2 * (0.01 - 0.025 / 3) ** 2 + (0.005 - 0.025 / 3) ** 2) / 2) ** 0.5
    assert d["ci95"] == pytest.approx(4.302653 * sd / 3 ** 0.5, rel=1e-5)
    assert (d["above"], d["below"], d["verdict"]) == (3, 0, "above")  # the interval excludes zero
    down = paired_difference(ref, runs)
    assert down["verdict"] == "below" and down["mean"] == pytest.approx(-d["mean"])
    mixed = paired_difference({0: 0.85, 1: 0.80}, {0: 0.84, 1: 0.82})
    assert (mixed["above"], mixed["below"], mixed["verdict"]) == (1, 1, "unresolved")
    assert paired_difference({0: 0.9}, {0: 0.8})["verdict"] == "one seed"
    assert paired_difference({0: 0.9}, {1: 0.8}) is None  # no seed in common


def test_paired_rows_against_reference_and_baseline(tmp_path: Path) -> None:
    spec = parse_study(study(tmp_path / "x.npz", seeds=[0, 1]))  # baseline: the first variation, dead leaves
    common = {"eval_set": "tiny", "protocol": "knn", "status": "done", "budget_unit": "images", "budget": "64"}
    rows = [{**common, "variation": v, "kind": k, "seed": seed, "top1": top1} for v, k, seed, top1 in [
        ("dead leaves", "synthetic", 0, 0.80), ("dead leaves", "synthetic", 1, 0.70),
        ("dead leaves", "real", 0, 0.82), ("dead leaves", "real", 1, 0.74),
        ("spectrum", "synthetic", 0, 0.83), ("spectrum", "synthetic", 1, 0.74),
        ("spectrum", "real", 0, 0.82), ("spectrum", "real", 1, 0.74)]]
    paired = paired_rows(spec, rows)
    got = {(r["variation"], r["against"]): r for r in paired}
    assert set(got) == {("dead leaves", "reference"), ("spectrum", "reference"), ("spectrum", "baseline: dead leaves")}
    assert got[("spectrum", "baseline: dead leaves")]["mean_diff"] == pytest.approx(0.035)
    assert got[("spectrum", "baseline: dead leaves")]["per_seed"] == "0:+0.0300 1:+0.0400"
    assert got[("dead leaves", "reference")]["mean_diff"] == pytest.approx(-0.03)
    assert got[("dead leaves", "reference")]["seeds_below"] == 2
    text = markdown_paired(paired)
    assert "| spectrum | 64 images | tiny | knn | baseline: dead leaves | +3.50 ± " in text
    assert "| +3.00 / +4.00 | 2 of 2 | unresolved |" in text
    assert markdown_paired([]) == ""


def test_budget_helpers(tmp_path: Path) -> None:
    assert steps_for_images(64, 16) == 4 and steps_for_images(65, 16) == 5 and steps_for_images(1, 16) == 1
    assert budget_flag(300, 300) == "ok" and budget_flag(330, 300) == "ok" and budget_flag(270, 300) == "ok"
    assert budget_flag(331, 300) == "over" and budget_flag(269, 300) == "under"
    assert budget_flag(100, None) == "" and budget_flag(None, 300) == ""
    from synthsight.config import load_config

    cfg = load_config("demo", ["trainer.steps=1000"])  # 1000 steps with 30 warm-up steps
    assert schedule_overrides(cfg, 200, 4) == ["trainer.steps=200", "trainer.warmup_steps=6",
                                               "trainer.checkpoint_every=50"]
    log = tmp_path / "train_log.csv"
    log.write_text("step,loss,lr,images_per_second\n2,1,0.1,32\n4,1,0.1,16\n5,1,0.1,16\n")
    assert log_seconds(log, batch_size=16) == pytest.approx(2 * 16 / 32 + 2 * 16 / 16 + 1)


def test_split_names_keeps_names_that_hold_commas() -> None:
    known = ["shapes + textures", "shapes + textures, crop 0.08", "demo, crop_scale_min=0.2", "b"]
    assert split_names("shapes + textures, crop 0.08", known) == ["shapes + textures, crop 0.08"]
    assert split_names("shapes + textures,b", known) == ["shapes + textures", "b"]
    assert split_names("b, demo, crop_scale_min=0.2", known) == ["b", "demo, crop_scale_min=0.2"]
    assert split_names("typo, b", known) == ["typo", "b"]  # select() names the unknown one
    assert split_names("x,y", ["x,y"]) == ["x,y"]  # the name as the study file spells it


def test_summary_g_per_variation_from_rows(tmp_path: Path) -> None:
    spec = parse_study(study(tmp_path / "x.npz", seeds=[0, 1]))
    rows = []
    for seed, (syn, real, rnd) in enumerate([(0.80, 0.90, 0.70), (0.84, 0.90, 0.70)]):
        common = {"variation": "dead leaves", "eval_set": "tiny", "protocol": "knn", "seed": seed, "status": "done",
                  "train_seconds": 10.0, "images_seen": 64, "budget_flag": "over" if seed else "ok", "run_key": "k"}
        rows += [{**common, "kind": "synthetic", "budget_unit": "images", "budget": "64", "top1": syn},
                 {**common, "kind": "real", "budget_unit": "images", "budget": "64", "top1": real},
                 {**common, "kind": "random", "budget_unit": "", "budget": "", "top1": rnd}]
    # a resumed study may have evaluated random init of a seed whose runs are still to come (and a reference of a seed
    # whose formula run is): G compares the same seeds
    rows += [{**rows[-1], "seed": 2, "top1": 0.40}, {**rows[-2], "seed": 3, "top1": 0.99}]
    (row,) = summarize(spec, rows)
    assert row["synthetic_mean"] == pytest.approx(0.82) and row["real_mean"] == pytest.approx(0.90)
    assert row["random_mean"] == pytest.approx(0.70)
    assert row["gap_closed"] == pytest.approx(0.6)
    assert row["gap_closed_per_seed"] == "0.500 0.700"
    assert row["n_seeds"] == 2 and row["flagged_runs"] == 1


def test_table_says_why_g_is_na_beside_a_reference_that_did_not_beat_random_init(tmp_path: Path) -> None:
    spec = parse_study(study(tmp_path / "x.npz"))
    common = {"variation": "dead leaves", "eval_set": "tiny", "protocol": "knn", "seed": 0, "status": "done",
              "train_seconds": 10.0, "images_seen": 64, "budget_flag": "ok", "run_key": "k", "budget_unit": "images",
              "budget": "64"}

    def table(real: float) -> str:
        rows = [{**common, "kind": "synthetic", "top1": 0.80}, {**common, "kind": "real", "top1": real},
                {**common, "kind": "random", "budget_unit": "", "budget": "", "top1": 0.80}]
        return markdown_table(summarize(spec, rows))

    na = table(0.804)  # the width-256 Fashion-MNIST case: the reference 0.4 points above random init
    assert "| n/a |" in na and "half a point or less" in na
    assert "half a point" not in table(0.85)  # G = 0: a number, no note


def test_every_study_table_prints_a_budget_the_same_way(tmp_path: Path) -> None:
    from synthsight.report.study import _paired_table, _per_class_table, _summary_table
    from synthsight.study.spec import budget_label

    assert budget_label({"budget": "30", "budget_unit": "minutes"}) == "30 min"
    assert budget_label({"budget": 0.5, "budget_unit": "minutes"}) == "0.5 min"
    assert budget_label({"budget": "332800", "budget_unit": "images"}) == "332800 images"
    assert budget_label({"budget": "", "budget_unit": ""}) == ""  # random init has no budget
    spec = parse_study(study(tmp_path / "x.npz", budget={"minutes": 30}, seeds=[0, 1]))
    rows = []
    for seed, (syn, real) in enumerate([(0.80, 0.90), (0.84, 0.90)]):
        common = {"variation": "dead leaves", "eval_set": "tiny", "protocol": "knn", "seed": seed, "status": "done",
                  "train_seconds": 1800.0, "images_seen": 64, "budget_flag": "ok", "run_key": f"k{seed}",
                  "budget_unit": "minutes", "budget": "30"}
        rows += [{**common, "kind": "synthetic", "top1": syn}, {**common, "kind": "real", "top1": real}]
    summary, paired = summarize(spec, rows), paired_rows(spec, rows)
    per_class = per_class_from_table({("dead leaves", "synthetic", ("minutes", "30"), "tiny", "knn"): {0: [0.8]},
                                      ("dead leaves", "real", ("minutes", "30"), "tiny", "knn"): {0: [0.9]}},
                                     "dead leaves", {"tiny": ["shirt"]})
    assert per_class[0]["budget_unit"] == "minutes" and per_class[0]["budget"] == "30"
    for text in (markdown_table(summary), markdown_paired(paired), _summary_table(summary), _paired_table(paired),
                 _per_class_table(per_class, "dead leaves")):
        assert "30 min" in text and "30 minutes" not in text, text


def test_per_class_deltas_take_the_baselines_at_the_variations_seeds() -> None:
    # two classes; the variation, its real-data reference and the baseline ran seeds 0 and 1, random init also seed 2
    # (a resumed study), the baseline also seed 3, the reference seed 4: every delta compares the same seeds
    five = ("minutes", "5")
    table = {("v", "synthetic", five, "s", "knn"): {0: [0.8, 0.6], 1: [0.9, None]},
             ("v", "random", ("", ""), "s", "knn"): {0: [0.5, 0.4], 1: [0.7, 0.5], 2: [0.0, 0.0]},
             ("b", "synthetic", five, "s", "knn"): {0: [0.6, 0.6], 1: [0.8, 0.2], 3: [1.0, 1.0]},
             ("v", "real", five, "s", "knn"): {0: [0.9, 0.7], 1: [1.0, 0.9], 4: [0.0, 0.0]}}
    rows = per_class_from_table(table, "b", {"s": ["shirt", "bag"]})
    assert [(r["variation"], r["class"]) for r in rows] == [("v", "shirt"), ("v", "bag"), ("b", "shirt"),
                                                             ("b", "bag")]
    shirt, bag = rows[0], rows[1]
    assert shirt["top1"] == pytest.approx(0.85) and shirt["minus_random"] == pytest.approx(0.25)
    assert shirt["minus_baseline"] == pytest.approx(0.15) and shirt["n_seeds"] == 2
    assert shirt["minus_reference"] == pytest.approx(-0.1) and rows[1]["minus_reference"] == pytest.approx(-0.2)
    assert bag["top1"] == pytest.approx(0.6)  # a class without accuracy in a seed: the mean of the others
    assert bag["minus_random"] == pytest.approx(0.15) and bag["minus_baseline"] == pytest.approx(0.2)
    assert rows[2]["n_seeds"] == 3 and rows[2]["minus_baseline"] == 0  # the baseline against itself
    assert rows[2]["minus_reference"] is None and len(rows) == 4  # no reference for b; no rows for a reference


# ------------------------------------------------------------------------------------------- end to end


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _count_pretrain(monkeypatch) -> list[str]:
    import synthsight.runs

    calls: list[str] = []
    real = synthsight.runs.pretrain_run

    def counting(cfg, run_dir, resume=False, progress=True):
        calls.append(Path(run_dir).name)
        return real(cfg, run_dir, resume=resume, progress=progress)

    monkeypatch.setattr(synthsight.runs, "pretrain_run", counting)
    return calls


def test_tiny_study_end_to_end_then_reuse_then_change(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "study"
    calls = _count_pretrain(monkeypatch)
    spec = parse_study(study(real_set))
    run_study(spec, out, progress=False, log=lambda _: None)
    assert len(calls) == 3  # two synthetic runs and the one reference they share
    rows = _csv(out / "results.csv")
    # one row per run x set x protocol, per variation: random + synthetic + real
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"synthetic", "real", "random"}
    syn = [r for r in rows if r["kind"] == "synthetic"]
    assert all(r["images_seen"] == "64" and r["steps"] == "4" and float(r["train_seconds"]) > 0 for r in syn)
    assert all(r["budget_flag"] == "" for r in syn)  # an images budget has no wall-clock to miss
    assert {r["variation"]: r["pretrained_on"] for r in syn} == {
        "dead leaves": "dead_leaves/mixed", "spectrum": "spectrum/color:anisotropy_std=0.05"}
    summary = _csv(out / "summary.csv")
    assert [r["variation"] for r in summary] == ["dead leaves", "spectrum"]
    for name in ("table.md", "per_class.csv", "report.html", "accuracy_vs_budget.png", "variations.png",
                 "timings.json", "plan.json", "study.yaml", "paired.csv"):
        assert (out / name).is_file(), name
    assert "G per seed" in (out / "report.html").read_text() and "- reference" in (out / "report.html").read_text()
    paired = _csv(out / "paired.csv")  # one seed: a difference each, nothing to resolve
    assert {(r["variation"], r["against"], r["verdict"]) for r in paired} == {
        ("dead leaves", "reference", "one seed"), ("spectrum", "reference", "one seed"),
        ("spectrum", "baseline: dead leaves", "one seed")}
    assert "Paired by seed" in (out / "report.html").read_text() and "Paired by seed" in (out / "table.md").read_text()
    per_class = _csv(out / "per_class.csv")
    assert len(per_class) == 2 * 3  # synthetic variations x classes
    assert all(r["minus_reference"] != "" for r in per_class)  # each variation's reference, class by class

    calls.clear()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*.json")}
    run_study(spec, out, progress=False, log=lambda _: None)
    assert calls == []  # every cell reused: same config hashes
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*.json")} == stamps  # and left untouched

    changed = study(real_set)
    changed["variations"][1]["set"]["trainer.lr"] = 0.001  # only spectrum's recipe changes
    run_study(parse_study(changed), out, progress=False, log=lambda _: None)
    assert len(calls) == 2 and all("spectrum" in c for c in calls)  # its synthetic run and its own reference


def test_only_runs_the_selected_cells_and_the_tables_keep_the_rest(real_set: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    out = tmp_path / "study"
    calls = _count_pretrain(monkeypatch)
    spec = parse_study(study(real_set))
    run_study(spec, out, progress=False, log=lambda _: None, only=(["spectrum"], None))
    # spectrum's run and the reference it shares (named after dead leaves, the first variation to need it)
    assert sorted(c.split("-")[0] for c in calls) == ["real", "synthetic"]
    assert not any(c.startswith("synthetic-dead") for c in calls)
    run_study(spec, out, progress=False, log=lambda _: None, only=(["dead leaves"], None))
    assert len(calls) == 3 and calls[-1].startswith("synthetic-dead")  # only dead leaves' own run was left
    assert {r["variation"] for r in _csv(out / "summary.csv")} == {"dead leaves", "spectrum"}


def test_killed_study_continues_where_it_stopped(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import synthsight.train.loop as loop

    out = tmp_path / "study"
    spec = parse_study(study(real_set, random_init=False, reference=False,
                             budget={"images": 128}))  # 8 steps, checkpoints every 2
    real_save = loop.save_checkpoint
    saved = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saved.append(args[1])
        if len(saved) == 6:  # the first run's 4 checkpoints, then 2 of the second's
            raise KeyboardInterrupt("simulated kill")

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            run_study(spec, out, progress=False, log=lambda _: None)
    calls = _count_pretrain(monkeypatch)
    run_study(spec, out, progress=False, log=lambda _: None)
    assert len(calls) == 1 and "spectrum" in calls[0]  # the finished first run is reused
    rows = {r["variation"]: r for r in _csv(out / "results.csv")}
    assert rows["dead leaves"]["resumed"] == "False" and rows["spectrum"]["resumed"] == "True"
    assert rows["spectrum"]["steps"] == "8" and float(rows["spectrum"]["train_seconds"]) > 0
    log = (out / "runs").glob("synthetic-spectrum-*/train_log.csv")
    assert [int(r["step"]) for r in _csv(next(log))][-1] == 8


def test_failed_cell_is_recorded_skipped_then_retried(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import synthsight.runs

    out = tmp_path / "study"
    spec = parse_study(study(real_set, random_init=False, reference=False))
    real = synthsight.runs.pretrain_run

    def fail_spectrum(cfg, run_dir, resume=False, progress=True):
        if "spectrum" in Path(run_dir).name:
            raise RuntimeError("simulated collapse")
        return real(cfg, run_dir, resume=resume, progress=progress)

    monkeypatch.setattr(synthsight.runs, "pretrain_run", fail_spectrum)
    run_study(spec, out, progress=False, log=lambda _: None)
    rows = {r["variation"]: r for r in _csv(out / "results.csv")}
    assert rows["dead leaves"]["status"] == "done"
    assert rows["spectrum"]["status"] == "failed" and "simulated collapse" in rows["spectrum"]["error"]
    assert "1 failed" in (out / "table.md").read_text()
    monkeypatch.setattr(synthsight.runs, "pretrain_run", real)
    run_study(spec, out, progress=False, log=lambda _: None)  # skipped: still failed
    assert {r["variation"]: r["status"] for r in _csv(out / "results.csv")}["spectrum"] == "failed"
    run_study(spec, out, progress=False, retry_failed=True, log=lambda _: None)
    assert {r["variation"]: r["status"] for r in _csv(out / "results.csv")}["spectrum"] == "done"


def test_minutes_budget_probes_once_and_records_the_check(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import synthsight.study.runner as runner

    out = tmp_path / "study"
    data = study(real_set, random_init=False, reference=False, budget={"minutes": 0.02}, seeds=[0, 1],
                 probe={"warmup": 1, "steps": 2, "replan_at": 0},  # the plan alone (re-planning: its own test)
                 schedule="steps")
    data["variations"] = data["variations"][:1]
    probes = []
    real_probe = runner.probe
    monkeypatch.setattr(runner, "probe", lambda *a, **k: probes.append(1) or real_probe(*a, **k))
    run_study(parse_study(data), out, progress=False, log=lambda _: None)
    assert len(probes) == 1  # one recipe: one probe
    (rate,) = json.loads((out / "probes.json").read_text()).values()
    first, second = sorted(_csv(out / "results.csv"), key=lambda r: int(r["seed"]))
    # (products in steps_for_budget's order: 1.2 * 55 / 1.5 is 44.0 but 1.2 * (55 / 1.5) is 43.99...)
    seconds = 0.02 * 60
    assert int(first["steps"]) == max(1, int(seconds * rate["steps_per_second"]))
    # the second seed runs at the speed the first one measured over its whole run
    assert int(second["steps"]) == max(1, int(seconds * (int(first["steps"]) / float(first["train_seconds"]))))
    rows = [first, second]
    assert all(r["budget_seconds"] == "1.2" and r["budget_flag"] in ("ok", "over", "under") for r in rows)
    assert all(float(r["budget_ratio"]) == pytest.approx(float(r["train_seconds"]) / 1.2, abs=0.01) for r in rows)
    # a run part-way through keeps its steps when the measured speed changes under it
    (seed1,) = [d for d in (out / "runs").iterdir() if "-s1-" in d.name]
    (seed1 / "cell.json").unlink()
    (seed0,) = [d for d in (out / "runs").iterdir() if "-s0-" in d.name]
    record = json.loads((seed0 / "cell.json").read_text())
    record["train_seconds"] /= 10  # ten times the speed: a fresh schedule would take ten times the steps
    (seed0 / "cell.json").write_text(json.dumps(record))
    run_study(parse_study(data), out, progress=False, log=lambda _: None)
    assert json.loads((seed1 / "cell.json").read_text())["steps"] == int(second["steps"])


def test_a_minutes_run_trains_on_the_clock_within_its_step_bound(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import synthsight.study.runner as runner

    out = tmp_path / "study"
    data = study(real_set, random_init=False, reference=False, budget={"minutes": 0.05},
                 probe={"warmup": 1, "steps": 2})
    data["variations"] = data["variations"][:1]
    monkeypatch.setattr(runner, "probe", lambda *a, **k: {"steps_per_second": 500.0, "warmup": 1, "steps": 2,
                                                          "seconds": 0.1})  # plans 1,500 steps: far too many
    run_study(parse_study(data), out, progress=False, log=lambda _: None)
    (folder,) = (out / "runs").iterdir()
    cell = json.loads((folder / "cell.json").read_text())
    trainer = json.loads((folder / "config.json").read_text())["trainer"]
    assert cell["schedule"] == "time" and trainer["minutes"] == 0.05 and trainer["steps"] == cell["step_bound"] == 3000
    assert trainer["checkpoint_every"] == 1500 // 4  # 4 checkpoints within the planned steps
    assert 0 < cell["steps"] < 1500 and cell["budget_flag"] == "ok"  # the clock ended it, not the plan
    with open(folder / "train_log.csv") as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == cell["steps"]
    latest = folder / "checkpoints" / f"step-{cell['steps']:06d}"
    cfg = runner.config_from_dict(json.loads((folder / "config.json").read_text()))
    assert runner._finished(latest, cfg)  # a study killed after this checkpoint does not train the run again
    cfg.trainer.minutes = 1.0
    assert not runner._finished(latest, cfg)


def test_replanned_steps_fill_the_budget_at_the_runs_own_speed(tmp_path: Path) -> None:
    from synthsight.config import load_config
    from synthsight.study.budget import replanned_steps

    log = tmp_path / "train_log.csv"
    # batch 16: a slow first interval (start-up, counted as time spent only), then 10 steps/s
    log.write_text("step,images_per_second\n10,32\n" + "".join(f"{s},160\n" for s in range(20, 101, 10)))
    cfg = load_config("demo", TINY_BASE + ["trainer.batch_size=16"])
    got = replanned_steps(log, cfg, budget_seconds=60)
    assert got["at_step"] == 100 and got["seconds"] == pytest.approx(5 + 9)
    assert got["steps_per_second"] == pytest.approx(10) and got["steps"] == 100 + 460  # 46 s left at 10 steps/s
    # a pool's first epoch (steps 1-40) renders: after a pause it renders again at the speed it had
    log.write_text("step,images_per_second\n10,32\n" + "".join(
        f"{s},{80 if s <= 40 else 160}\n" for s in range(20, 101, 10)))
    pooled = load_config("demo", TINY_BASE + ["trainer.batch_size=16", "data.pool=640"])
    got = replanned_steps(log, pooled, budget_seconds=60)
    assert got["first_epoch_steps_per_second"] == pytest.approx(5) and got["seconds"] == pytest.approx(5 + 6 + 6)
    assert got["steps"] == 100 + 40 + int((60 - 17 - 8) * 10)  # 40 steps in 8 s, then 10 steps/s
    assert replanned_steps(log, cfg, budget_seconds=10)["steps"] == 101  # over budget already: one more step


def test_minutes_run_pauses_replans_and_resumes_with_its_split(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import synthsight.runs
    import synthsight.study.runner as runner

    out = tmp_path / "study"
    data = study(real_set, random_init=False, reference=False, budget={"minutes": 0.05},
                 probe={"warmup": 1, "steps": 2, "replan_at": 0.2}, base={"preset": "demo", "overrides": TINY_BASE},
                 schedule="steps")
    data["variations"] = data["variations"][:1]
    monkeypatch.setattr(runner, "probe", lambda *a, **k: {"steps_per_second": 100.0, "warmup": 1, "steps": 2,
                                                          "seconds": 0.1})  # plans 300 steps
    calls = []
    real = synthsight.runs.pretrain_run

    def recording(cfg, run_dir, resume=False, progress=True, stop_at=None):
        calls.append((cfg.trainer.steps, stop_at, resume, cfg.trainer.workers, cfg.trainer.threads))
        return real(cfg, run_dir, resume=resume, progress=progress, stop_at=stop_at)

    monkeypatch.setattr(synthsight.runs, "pretrain_run", recording)
    run_study(parse_study(data), out, progress=False, log=lambda _: None)
    (folder,) = (out / "runs").iterdir()
    cell = json.loads((folder / "cell.json").read_text())
    assert calls[0][:3] == (300, 60, False) and cell["replan"]["at_step"] == 60
    steps = cell["replan"]["steps"]
    assert calls[1][:3] == (steps, None, True) and cell["steps"] == steps and not cell["resumed"]
    assert json.loads((folder / "replan.json").read_text())["steps"] == steps
    assert json.loads((folder / "config.json").read_text())["trainer"]["steps"] == steps
    with open(folder / "train_log.csv") as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == steps
    # a started run goes on with the worker/thread split trainer.split=auto chose at its start (in config.json)
    r = runner.StudyRunner(parse_study(data), out, progress=False)
    cell_plan = r.plan.cells[0]
    started = {"trainer": {"workers": 1, "threads": 2}}  # the cell itself says 0 and 1
    cfg = r.run_config(cell_plan, 500, started)
    assert (cfg.trainer.workers, cfg.trainer.threads, cfg.trainer.steps) == (1, 2, 500)


def test_probe_times_whole_echo_windows(tmp_path: Path, monkeypatch) -> None:
    import synthsight.train.loop as loop
    from synthsight.config import load_config
    from synthsight.study.budget import probe

    seen = []

    def fake_pretrain(cfg, folder, progress=False):  # one logged row per step, 256 img/s
        seen.append((cfg.trainer.steps, cfg.trainer.warmup_steps))
        folder.mkdir(parents=True)
        rows = "".join(f"{s},256\n" for s in range(1, cfg.trainer.steps + 1))
        (folder / "train_log.csv").write_text("step,images_per_second\n" + rows)

    monkeypatch.setattr(loop, "pretrain", fake_pretrain)
    cfg = load_config("demo", TINY_BASE + ["data.echo=4"])
    got = probe(cfg, tmp_path / "p", warmup=5, steps=10)
    assert seen == [(8 + 12, 8)]  # 5 -> 8 untimed, 10 -> 12 timed: whole windows of 4
    assert got["steps_per_second"] == pytest.approx(256 / cfg.trainer.batch_size)
    probe(load_config("demo", TINY_BASE), tmp_path / "q", warmup=5, steps=10)
    assert seen[-1] == (15, 5)  # no echo: as asked


def test_probe_of_a_pool_times_the_steps_after_its_rendering_epoch(tmp_path: Path, monkeypatch) -> None:
    import synthsight.train.loop as loop
    from synthsight.config import load_config
    from synthsight.study.budget import probe, steps_for_budget

    seen = []

    def fake_pretrain(cfg, folder, progress=False):  # the pool's first epoch (steps 1-40) runs at half speed
        seen.append((cfg.trainer.steps, cfg.trainer.warmup_steps))
        folder.mkdir(parents=True)
        bs = cfg.trainer.batch_size
        rows = "".join(f"{s},{bs if s <= 40 else 2 * bs}\n" for s in range(1, cfg.trainer.steps + 1))
        (folder / "train_log.csv").write_text("step,images_per_second\n" + rows)

    monkeypatch.setattr(loop, "pretrain", fake_pretrain)
    cfg = load_config("demo", TINY_BASE + ["data.pool=640", "trainer.batch_size=16"])  # 40 steps per epoch
    got = probe(cfg, tmp_path / "p", warmup=5, steps=10)
    assert seen == [(40 + 10, 40)]  # the timed steps come after the rendering epoch
    assert got["steps_per_second"] == pytest.approx(2.0)
    assert got["first_epoch"] == {"steps": 40, "steps_per_second": pytest.approx(1.0)}  # steps 6-40
    # 1 minute: 40 steps take 40 s at 1 step/s, the other 20 s give 40 steps at 2 steps/s
    assert steps_for_budget(1, 2.0, 40, 1.0) == 80 and steps_for_budget(1, 2.0) == 120
    assert steps_for_budget(0.5, 2.0, 40, 1.0) == 30  # the budget ends inside the first epoch
    probe(load_config("demo", TINY_BASE + ["data.pool=32", "trainer.batch_size=16"]), tmp_path / "q", 5, 10)
    assert seen[-1] == (15, 5)  # a pool smaller than the warm-up: as asked


def test_calibrated_rate_prefers_finished_runs() -> None:
    assert calibrated_rate(5.0, []) == 5.0
    assert calibrated_rate(5.0, [(100, 25.0), (300, 75.0)]) == 4.0  # total steps / total seconds
    assert calibrated_rate(5.0, [(100, 0.0)]) == 5.0  # nothing measured


def test_cli_help_plan_and_report(real_set: Path, tmp_path: Path, capsys) -> None:
    import yaml

    with pytest.raises(SystemExit) as info:
        main(["study", "--help"])
    assert info.value.code == 0 and "resumable" in capsys.readouterr().out.lower()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study(real_set)))
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "4 cells, 4 to do" in text and "random" in text
    assert main(["study", str(path), "--out", str(tmp_path / "missing"), "--report"]) == 2
    assert load_study(path).name == "tiny"
    # a variation whose name holds a comma (as a grid's names do) is selectable by --variations
    named = study(real_set)
    named["variations"][1]["name"] = "spectrum, anisotropy 0.05"
    path.write_text(yaml.safe_dump(named))
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--plan",
                 "--variations", "spectrum, anisotropy 0.05"]) == 0
    assert "3 cells, 3 to do" in capsys.readouterr().out  # its run, the shared reference and random init


def test_example_study_files_parse_and_expand() -> None:
    root = Path(__file__).resolve().parents[1] / "configs" / "studies"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/studies/*.yaml: the example study files"
    for path in files:
        plan = expand(load_study(path))
        assert plan.cells, path


def test_photos_30min_preset_trains_the_study_variation_it_names() -> None:
    """configs/photos_30min_cpu.yaml is photo_30min.yaml's width-256 variation (docs/TRANSFER.md): the same data,
    views, network, method and optimiser, 30 minutes on the clock, warming up for the same share of the budget."""
    from synthsight.config import load_config
    from synthsight.study.spec import variation_config

    spec = load_study(Path(__file__).resolve().parents[1] / "configs" / "studies" / "photo_30min.yaml")
    (variation,) = [v for v in spec.variations if v.name == "shapes + textures crop 0.08 width 256"]
    studied = variation_config(spec, variation, 0).to_dict()
    preset = load_config("photos_30min_cpu").to_dict()
    for section in ("data", "views", "model", "method"):
        assert preset[section] == studied[section], section
    for key in ("batch_size", "optimizer", "lr", "weight_decay", "min_lr", "amp", "channels_last"):
        assert preset["trainer"][key] == studied["trainer"][key], key
    assert preset["trainer"]["minutes"] == 30 and Budget("minutes", 30) in spec.budgets
    ours, theirs = preset["trainer"], studied["trainer"]
    assert ours["warmup_steps"] / ours["steps"] == pytest.approx(theirs["warmup_steps"] / theirs["steps"], abs=1e-3)
    assert preset["eval"]["data"] == preset["eval"]["test_data"] == "photos"


def test_fit_log_budget_recovers_a_and_b() -> None:
    from synthsight.study.results import fit_log_budget

    import math

    summary = [{"variation": "w64", "eval_set": "s", "protocol": "knn", "budget": str(b),
                "synthetic_mean": 0.5 + 0.03 * math.log(b)} for b in (5, 10, 20, 40)]
    summary.append({"variation": "one budget", "eval_set": "s", "protocol": "knn", "budget": "5",
                    "synthetic_mean": 0.6})
    (fit,) = fit_log_budget(summary)
    assert fit["variation"] == "w64" and fit["n_budgets"] == 4
    assert fit["a"] == pytest.approx(0.5) and fit["b"] == pytest.approx(0.03)
    assert fit["per_doubling"] == pytest.approx(0.03 * math.log(2), abs=1e-6)


def test_a_second_study_process_on_the_same_folder_is_refused(real_set: Path, tmp_path: Path, monkeypatch) -> None:
    import os
    import subprocess
    import sys

    from synthsight.run_lock import RunLockedError
    from tests.test_resume import HOLD_LOCK, ROOT

    out = tmp_path / "study"
    calls = _count_pretrain(monkeypatch)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="in use by another synthsight process"):
            run_study(parse_study(study(real_set)), out, progress=False, log=lambda _: None)
        assert calls == [] and [p.name for p in out.iterdir()] == [".lock"]  # no cell started, nothing written
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_a_study_loads_its_report_code_when_it_starts() -> None:
    # a study runs for hours and writes report.html at its end; code edited meanwhile must not reach that write (it
    # once failed with an ImportError from half-edited code), so the report module comes in with the results module
    import subprocess
    import sys

    code = "import sys, synthsight.study.results; assert 'synthsight.report.study' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

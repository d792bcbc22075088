"""All feature analyses of one evaluation in one call: the PNGs and analysis.json that `synthsight eval` writes.

For the pretrained encoder ("ours", evaluated last) against a baseline (random init of the same architecture
when it was evaluated, else the first other encoder with features):

    embedding.png          2-D map (t-SNE, or UMAP when installed) of real test features, coloured by class
    units_selectivity.png  class-selectivity index per feature unit, ours vs baseline (Morcos et al. 2018)
    units_top.png          the most selective units of ours and their top-activating test images
    retrieval.png          test queries (one per class) and their nearest training images, ours;
    retrieval_baseline.png the same for the baseline
    attention.png          CLS attention maps per head (ViT backbones only; a note otherwise)
    per_class.png          per-class accuracy difference, ours minus baseline (from evaluation's per-class numbers)

analysis.json holds the numbers behind them (selective unit counts, retrieval precision, ...), every figure with
its caption, and notes on what was skipped and why. On Fashion-MNIST (60k/10k, 256-d) it all takes well under a
minute on two CPU cores; t-SNE on 2,000 points per encoder is most of it.

Example:
    >>> report = eval_run(run_dir, cfg, run_dir / "eval")
    >>> result = run_analyses(report, run_dir / "eval")
    >>> [f.path.name for f in result.figures]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from synthsight.analysis.attention_plot import plot_attention
from synthsight.analysis.embedding import embed_2d, plot_embeddings
from synthsight.analysis.figures import Figure, class_name
from synthsight.analysis.per_class import compare_per_class, plot_per_class_diff
from synthsight.analysis.retrieval import pick_queries, plot_retrieval, retrieve
from synthsight.analysis.units import SELECTIVE_THRESHOLD, plot_selectivity_histogram, plot_top_units, unit_selectivity

SUMMARY_FILE = "analysis.json"
PER_CLASS_PROTOCOLS = ("linear", "knn")  # the first one both encoders have per-class numbers for is plotted
RANDOM_PREFIX = "random init"


@dataclass
class AnalysisSettings:
    n_embed: int = 2000  # test points per 2-D embedding (stratified, seeded): t-SNE cost grows ~n log n
    embed_method: str = "auto"  # "tsne", "umap" (optional package) or "auto"
    n_queries: int = 10  # retrieval queries, one per class, at most this many classes
    k_retrieval: int = 8  # neighbours shown per query
    n_units: int = 8  # most selective units shown
    n_unit_images: int = 8  # top-activating images per unit
    n_attention: int = 4  # test images whose attention maps are drawn
    n_focus: int = 256  # test images whose attention focus (share on the object) is measured
    threshold: float = SELECTIVE_THRESHOLD  # SI above which a unit counts as class-selective
    seed: int = 0


@dataclass
class EncoderData:
    """What the analyses need of one encoder: its name, features, and (optionally) its network."""

    name: str
    train: torch.Tensor | None  # float Tensor[N_train, D], None if only test features exist
    test: torch.Tensor  # float Tensor[N_test, D]
    network: nn.Module | None = None  # the backbone (absent for raw pixels)
    per_class: dict[str, list[float | None]] = field(default_factory=dict)  # protocol -> accuracy per class


@dataclass
class AnalysisResult:
    figures: list[Figure]
    summary: dict[str, Any]  # JSON-ready numbers, as written to analysis.json
    notes: list[str]  # what was skipped and why
    seconds: float


def run_analyses(report: Any, out_dir: Path, settings: AnalysisSettings | None = None, train_images: Any = None,
                 progress: bool = True, log: Callable[[str], None] = print) -> AnalysisResult:
    """Analyses of an EvalReport (its `features`, `networks`, `test` and per-class results); see module docstring.

    `train_images` (LabeledImages) lets retrieval show training neighbours; without it (and without
    `report.train`), neighbours are looked up among the other test images.
    """
    features = getattr(report, "features", None) or {}
    test = getattr(report, "test", None)
    if not features or test is None:
        raise ValueError("the evaluation report carries no features or test images to analyse; re-run the evaluation")
    networks = getattr(report, "networks", None) or {}
    per_class = {e.name: {p: r.per_class for p, r in e.results.items() if getattr(r, "per_class", None)}
                 for e in report.encoders}
    encoders = [EncoderData(name, *features[name], network=networks.get(name), per_class=per_class.get(name, {}))
                for name in (e.name for e in report.encoders) if name in features]
    train = train_images if train_images is not None else getattr(report, "train", None)
    return analyse(encoders, test, out_dir, settings, train=train, baseline=getattr(report, "baseline", None),
                   progress=progress, log=log)


def pick_pair(encoders: list[EncoderData], baseline: str | None = None) -> tuple[EncoderData, EncoderData | None]:
    """(ours: the last encoder, baseline: the one named, else random init if evaluated, else the first other one)."""
    if not encoders:
        raise ValueError("no encoder to analyse")
    ours, others = encoders[-1], encoders[:-1]
    named = [e for e in others if e.name == baseline]
    randoms = [e for e in others if e.name.startswith(RANDOM_PREFIX)]
    return ours, (named or randoms or others or [None])[0]


def analyse(encoders: list[EncoderData], test: Any, out_dir: Path, settings: AnalysisSettings | None = None,
            train: Any = None, baseline: str | None = None, progress: bool = True,
            log: Callable[[str], None] = print) -> AnalysisResult:
    """The analyses on plain data: encoders (ours last), test LabeledImages, optional train LabeledImages, the
    baseline's name (default: random init if present, else the first encoder)."""
    s = settings or AnalysisSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours, base = pick_pair(encoders, baseline)
    pair = [e for e in (ours, base) if e is not None]
    figures: list[Figure] = []
    notes: list[str] = []
    summary: dict[str, Any] = {"ours": ours.name, "baseline": base.name if base else None,
                               "classes": list(test.classes), "n_test": len(test.labels), "settings": vars(s)}
    steps: list[tuple[str, Callable[[], None]]] = []

    def step(name: str):
        return lambda fn: steps.append((name, fn))

    @step("embedding")
    def _embedding() -> None:
        embs = {e.name: embed_2d(e.test, test.labels, s.n_embed, s.seed, s.embed_method) for e in pair}
        first = next(iter(embs.values()))
        summary["embedding"] = {"method": first.method, "n_points": len(first.points),
                                "seconds": round(sum(e.seconds for e in embs.values()), 1)}
        path = plot_embeddings(embs, test.classes, out_dir / "embedding.png")
        figures.append(Figure("embedding", path, f"{first.method} of real test features ({len(first.points)} images, "
                              "stratified), coloured by class; no labels were used to train either encoder",
                              "embedding"))

    @step("unit selectivity")
    def _units() -> None:
        sels = {e.name: unit_selectivity(e.test, test.labels, s.threshold) for e in pair}
        summary["units"] = {name: sel.to_dict() for name, sel in sels.items()}
        path = plot_selectivity_histogram(sels, out_dir / "units_selectivity.png")
        figures.append(Figure("units_selectivity", path, "class-selectivity index of every feature unit on real test "
                              f"images; units with SI > {s.threshold:g} count as class-selective", "units"))
        path = plot_top_units(ours.test, test.images, sels[ours.name], out_dir / "units_top.png", test.classes,
                              s.n_units, s.n_unit_images)
        figures.append(Figure("units_top", path, f"{ours.name}: its {s.n_units} most class-selective units, each with "
                              f"its {s.n_unit_images} top-activating test images", "units"))

    @step("retrieval")
    def _retrieval() -> None:
        q = pick_queries(test.labels, 1, s.seed, s.n_queries)
        bank_images, bank_labels = (train.images, train.labels) if train is not None else (test.images, test.labels)
        where = "training" if train is not None else "other test"
        if train is None:
            notes.append("retrieval: training images were not available, so neighbours come from the test set "
                         "(the query itself excluded)")
        summary["retrieval"] = {"k": s.k_retrieval, "queries": q.tolist(), "bank": where, "precision": {}}
        for e, fname in ((ours, "retrieval.png"), (base, "retrieval_baseline.png")):
            bank = None if e is None else e.test if train is None else e.train
            if bank is None:
                continue
            ret = retrieve(bank, bank_labels, e.test[q], test.labels[q], s.k_retrieval,
                           exclude=q if train is None else None)
            summary["retrieval"]["precision"][e.name] = round(ret.precision, 4)
            path = plot_retrieval(ret, test.images[q], bank_images, test.classes, out_dir / fname,
                                  f"{e.name}: nearest {where} images by cosine similarity")
            figures.append(Figure(fname[:-4], path, f"{e.name}: one test query per class and its "
                                  f"{ret.neighbours.shape[1]} nearest {where} images (green frame: same class, red: "
                                  "other class)", "retrieval"))

    @step("attention")
    def _attention() -> None:
        if ours.network is None:
            notes.append(f"attention maps: skipped, {ours.name} has no network")
            return
        try:
            from synthsight.analysis.attention import cls_attention_maps
        except ImportError:
            notes.append("attention maps: skipped, synthsight.analysis.attention is not available")
            return
        q = pick_queries(test.labels, 1, s.seed, s.n_attention)
        images = test.images[q]  # drawn; the focus is measured over more images (`sample`), in the same pass
        order = torch.randperm(len(test.images), generator=torch.Generator().manual_seed(s.seed))[:s.n_focus]
        sample = test.images[order]
        try:
            both = _attention_maps(cls_attention_maps, ours.network, torch.cat([images, sample]))
        except ValueError as err:
            notes.append(f"attention maps: skipped, the backbone is not a ViT ({err})")
            return
        maps, sample_maps = both[:len(images)], both[len(images):]
        summary["attention"] = {"images": q.tolist(), "heads": int(maps.shape[1]), "grid": list(maps.shape[2:])}
        try:  # how much of it falls on the object (analysis/attention_focus.py)
            from synthsight.analysis.attention_focus import attention_focus, foreground_patches

            patch = sample.shape[-1] // sample_maps.shape[-1]
            summary["attention"]["focus"] = attention_focus(sample_maps, foreground_patches(sample, patch))
        except ValueError as err:
            notes.append(f"attention focus: skipped, {err}")
        focus = summary["attention"].get("focus")
        measured = (f"; over {focus['images']} test images {100 * focus['attention_share']:.0f}% of the attention "
                    f"falls on the object's patches, which cover {100 * focus['area_share']:.0f}% of the image (ratio "
                    f"{focus['ratio']:.2f}; 1 = attention ignores the object); separation {focus['separation']:.2f} "
                    f"(0: the maps do not follow the object's outline, 1: they segment it)") if focus else ""
        path = plot_attention(maps, images, out_dir / "attention.png", test.labels[q], test.classes)
        figures.append(Figure("attention", path, f"{ours.name}: CLS-token attention of the last block, per head, on "
                              f"real test images (each map scaled to its own range){measured}", "attention"))

    @step("per-class accuracy")
    def _per_class() -> None:
        if base is None:
            notes.append("per-class accuracy: skipped, no baseline encoder")
            return
        protocol = next((p for p in PER_CLASS_PROTOCOLS if p in ours.per_class and p in base.per_class), None)
        protocol = protocol or next((p for p in ours.per_class if p in base.per_class), None)
        if protocol is None:
            notes.append("per-class accuracy: skipped, the evaluation recorded no per-class accuracies")
            return
        names = [class_name(test.classes, i) for i in range(len(ours.per_class[protocol]))]
        cmp = compare_per_class(names, ours.per_class[protocol], base.per_class[protocol], protocol)
        summary["per_class"] = cmp.to_dict()
        path = plot_per_class_diff(cmp, out_dir / "per_class.png", ours.name, base.name)
        figures.append(Figure("per_class", path, f"per-class {protocol} accuracy, {ours.name} minus {base.name}, in "
                              "percentage points", "per_class"))

    t0 = time.perf_counter()
    bar = _progress(len(steps), progress)
    for name, fn in steps:
        bar.set_description(f"analysis: {name}")
        t = time.perf_counter()
        try:
            fn()
        except ValueError as err:  # degenerate data (one class, too few images): say so, keep the other analyses
            notes.append(f"{name}: skipped, {err}")
        summary.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t, 2)
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    summary.update(figures=[f.to_dict(out_dir) for f in figures], notes=notes, seconds=round(seconds, 1))
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    for note in notes:
        log(f"analysis: {note}")
    log(f"analysis: {len(figures)} figures in {seconds:.0f} s -> {out_dir / SUMMARY_FILE}")
    return AnalysisResult(figures, summary, notes, seconds)


def _attention_maps(fn: Callable, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    from synthsight.models.preprocess import normalize_images

    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            maps = fn(network, normalize_images(images.to(device)))
    finally:
        network.train(was_training)
    return maps.float().cpu()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="step")

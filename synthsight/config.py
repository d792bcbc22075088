"""Typed run configuration: dataclasses with a comment on every default, YAML presets, dotted overrides.

Example:
    >>> cfg = load_config("demo", ["trainer.steps=200", "method=simclr"])
    >>> cfg.trainer.steps
    200

A typo in a key names the closest valid key; a wrong type names the expected one; malformed YAML names the file or
the override and the line. Numbers in plain scientific notation (1e-3) are numbers, as in YAML 1.2.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from synthsight.augment.views import ViewConfig
from synthsight.family_spec import join_split_options, parse_family_spec

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MAX_IMAGE_SIZE = 4096  # upper bound of every image side in a config (render_size, views.size, eval.size)
SIZE_RULE = f"[1,{MAX_IMAGE_SIZE}]"
AMP_CHOICES = ("bf16", "fp16", "none")  # trainer.amp; synthsight/precision.py decides what bf16 runs as


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says which and how to fix it."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that 1e-3 and 5E+2 are numbers (YAML 1.1 wants 1.0e-3; 1.2 does not)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> value; ConfigError naming `where` (a file or an override) and the line of a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where} is not valid YAML{line}: {problem}; fix it (e.g. quote text holding ':' or "
                          "'#', close every bracket)") from None


def check_device(name: str, key: str = "trainer.device") -> None:
    """ConfigError unless name is auto, cpu, cuda or cuda:N."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name):
        hint = _closest(str(name), ["auto", "cpu", "cuda"])
        raise ConfigError(f"{key} = {name!r}: must be one of auto, cpu, cuda, cuda:N (N a GPU index).{hint}"
                          .rstrip("."))


def _rule(rule: str) -> tuple[Any, str]:
    """'>0', '>=1', '[0,1]', '(0,1]' -> (predicate, wording)."""
    if rule.startswith(">="):
        low = float(rule[2:])
        return (lambda v: v >= low), f">= {rule[2:]}"
    if rule.startswith(">"):
        low = float(rule[1:])
        return (lambda v: v > low), f"> {rule[1:]}"
    lo_text, hi_text = rule[1:-1].split(",")
    lo, hi, open_lo = float(lo_text), float(hi_text), rule[0] == "("
    return (lambda v: (v > lo if open_lo else v >= lo) and v <= hi), f"in {rule}"


def check_ranges(obj: Any, section: str, **rules: str) -> None:
    """Raise ConfigError for a field outside its range, e.g. check_ranges(cfg, "trainer", steps=">=1", lr=">0");
    None is always allowed (optional fields), lists are checked item by item."""
    for name, rule in rules.items():
        value = getattr(obj, name)
        ok, wording = _rule(rule)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{section}.{name} = {value!r}: must be a finite number {wording}")
            if item is not None and not ok(item):
                raise ConfigError(f"{section}.{name} = {value!r}: must be {wording}")


def check_not_above(obj: Any, section: str, low: str, high: str) -> None:
    """Raise ConfigError when field `low` is above field `high` (a range given by its two ends)."""
    if getattr(obj, low) > getattr(obj, high):
        raise ConfigError(f"{section}.{low} = {getattr(obj, low)} is above {section}.{high} = {getattr(obj, high)}; "
                          f"lower it")


def check_choices(obj: Any, section: str, **choices: tuple[str, ...]) -> None:
    for name, valid in choices.items():
        value = getattr(obj, name)
        if value not in valid:
            hint = _closest(str(value), list(valid))
            raise ConfigError(f"{section}.{name} = {value!r}: must be one of {', '.join(valid)}.{hint}".rstrip("."))


@dataclass
class DataConfig:
    # family[/variant][:key=value,...] or {name: family/variant, key: value}: generator options ride along
    families: list[str | dict] = field(default_factory=lambda: ["dead_leaves/mixed", "spectrum/color"])
    weights: list[float] | None = None  # sampling weight per family; None = equal
    render_size: int = 64  # generators render at this side; views are cropped and resized from it
    seed: int = 0  # stream seed: image i is a pure function of (family, config, seed, i)
    # pretrain on these real images instead (labels unused): the real-data reference of benchmarks/methods.py;
    # any eval data spec, e.g. fashion-mnist
    real: str | None = None
    # match the stream to these unlabelled target images (an eval data spec, e.g. photos): their summary figures
    # (spectrum slope, contrast, colour, grey share, background) choose families and weights, replacing
    # data.families / data.weights, and raise views.grayscale_p to the grey share (synthsight/analysis/match.py)
    match: str | None = None
    match_families: list[str] | None = None  # candidate families for data.match; None = a default set
    # data echoing: each rendered batch trains this many consecutive steps, each with its own views (rendering
    # cost / echo; unique images = steps x batch_size / echo; synthsight/train/echo.py)
    echo: int = 1
    # a finite data set instead of the endless stream: the stream's first `pool` images, a fresh order every epoch,
    # rendered once and kept in memory as 8-bit pixels (synthsight/generators/pool.py); None = the endless stream
    pool: int | None = None

    def __post_init__(self) -> None:
        check_ranges(self, "data", render_size=f"[8,{MAX_IMAGE_SIZE}]", weights=">=0", echo="[1,64]", pool=">=1")
        if self.real is not None and not self.real.strip():
            raise ConfigError("data.real is empty: give an eval data spec (fashion-mnist, an ImageFolder dir, an .npz) "
                              "or leave it unset (null) to pretrain on the synthetic families")
        if not self.families:
            raise ConfigError("data.families is empty: name at least one generator family, e.g. [dead_leaves/mixed]")
        self.families = join_split_options(self.families)
        for i, spec in enumerate(self.families):
            try:
                parse_family_spec(spec, f"data.families[{i}]")
            except ValueError as err:
                raise ConfigError(str(err)) from None
        if self.match is not None and not self.match.strip():
            raise ConfigError("data.match is empty: give an eval data spec of the target images (e.g. photos, an "
                              "ImageFolder dir, an .npz) or leave it unset (null)")


@dataclass
class ModelConfig:
    backbone: str = "smallconv"  # registered name, or any timm architecture as 'timm/<name>'
    small_stem: bool = True  # 3x3 stride-1 stem without max-pool for ResNets on 32-64 px images
    width: int = 64  # base width of the small ConvNet
    patch_size: int = 4  # ViT patch side in pixels: 4 gives an 8x8 grid at views.size=32 (timm's 16 is for 224 px)
    # ViT features: token (the CLS token) | avg (mean of the patch tokens, after the final norm; MAE fine-tunes on
    # it). Weights are the same either way: `eval --pool` / `finetune --pool` may choose another after training.
    # CNNs always average-pool and ignore it.
    pool: str = "token"

    def __post_init__(self) -> None:
        check_ranges(self, "model", width=">=2", patch_size=">=1")
        check_choices(self, "model", pool=("token", "avg"))


@dataclass
class TrainerConfig:
    steps: int = 300  # optimisation steps (one global batch each)
    minutes: float = 0.0  # > 0: train this long (the loop's wall clock) instead; steps is then the upper bound
    batch_size: int = 256  # global batch: images per optimisation step over all processes and accumulation steps
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3  # peak learning rate after warm-up (AdamW); use ~0.3 x batch/256 for SGD
    weight_decay: float = 1e-4
    warmup_steps: int = 20  # linear warm-up, then cosine decay to min_lr
    min_lr: float = 0.0
    amp: str = "bf16"  # bf16 | fp16 | none; bf16 trains ~3.8x faster on CPUs with AMX and is safe from overflow;
    # where the device has no native bf16 (AVX2-only CPUs) it trains in float32 instead (synthsight/precision.py)
    channels_last: bool = True
    compile: bool = False  # torch.compile the backbone and heads: faster steps after a slow first one (minutes on CPU)
    accumulate: int = 1  # micro-batches per step (gradient accumulation): same global batch in less memory
    sync_bn: bool = False  # with several processes, BatchNorm statistics over the global batch (SyncBatchNorm)
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    skip_nonfinite: bool = False  # skip (and count) a step whose loss or gradient is NaN/Inf (buffers restored)
    max_consecutive_skips: int = 10  # with skip_nonfinite: this many skipped steps in a row stop the run
    threads: int = 0  # torch intra-op threads; 0 = all cores (under torchrun: OMP_NUM_THREADS, 1 by default)
    workers: int = 1  # data-loader processes generating images beside training; 0 = generate in the main process
    split: str = "fixed"  # fixed: workers and threads as given | auto: a start-up probe picks them (train/split.py)
    device: str = "auto"  # auto | cpu | cuda | cuda:N; under torchrun each process takes cuda:LOCAL_RANK
    seed: int = 0  # seeds initialisation and augmentations
    log_every: int = 10  # steps between progress-bar and log updates
    log: str = "csv"  # csv (train_log.csv) | tensorboard (also TensorBoard scalars in RUN/tensorboard)
    checkpoint_every: int = 100  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2  # older checkpoints are deleted; 0 keeps all
    # Collapse alarm (train/collapse.py): figures of the embeddings the loss compares, logged in train_log.csv.
    collapse_check_every: int = 10  # steps between checks, from the end of warm-up on; 0 = off
    collapse_patience: int = 5  # collapsed checks in a row before the run stops (CollapseError); a warning before
    collapse_min_std: float = 0.1  # collapsed below this x 1/sqrt(D): std of L2-normalised embeddings (healthy ~1x)
    collapse_min_rank: float = 2.0  # collapsed below this effective rank of the embeddings (1 = a single direction)
    collapse_max_entropy: float = 0.98  # collapsed above this x ln K mean teacher entropy (DINO: uniform output)
    collapse_max_argmax_share: float = 0.9  # collapsed when this share of images has one teacher argmax (one-hot)
    # Online evaluation (train/online_eval.py): k-NN top-1 on a small real set, rank 0, logged as `knn`.
    online_eval_every: int = 0  # steps between evaluations; 0 = off (each costs a few seconds on CPU)
    online_eval_data: str = "fashion-mnist"  # like eval.data: fashion-mnist, an ImageFolder dir or .npz (split there)
    online_eval_limit: int = 2000  # training images (the k-NN memory bank), a stratified subset
    online_eval_test_limit: int = 1000  # test images, a stratified subset

    def __post_init__(self) -> None:
        check_ranges(self, "trainer", steps=">=1", minutes=">=0", batch_size=">=2", lr=">0", weight_decay=">=0",
                     warmup_steps=">=0", min_lr=">=0", accumulate=">=1", grad_clip=">=0", threads=">=0", workers=">=0",
                     log_every=">=1", checkpoint_every=">=1", keep_checkpoints=">=0", max_consecutive_skips=">=1",
                     collapse_check_every=">=0", collapse_patience=">=1", collapse_min_std=">=0",
                     collapse_min_rank=">=0", collapse_max_entropy="(0,1]", collapse_max_argmax_share="(0,1]",
                     online_eval_every=">=0", online_eval_limit=">=2", online_eval_test_limit=">=1")
        check_choices(self, "trainer", amp=AMP_CHOICES, optimizer=("adamw", "sgd"),
                      log=("csv", "tensorboard"), split=("fixed", "auto"))
        check_device(self.device)
        check_not_above(self, "trainer", "min_lr", "lr")


@dataclass
class EvalConfig:
    # training split: fashion-mnist, cifar10:DIR, cifar100:DIR, stl10:DIR, an ImageFolder dir or .npz
    data: str = "fashion-mnist"
    test_data: str = "fashion-mnist"  # test split, same forms (named sets and CIFAR/STL dirs give their test split)
    # knn, linear, kmeans, fewshot, finetune (synthsight.eval.protocols.PROTOCOLS); finetune trains (slow)
    protocols: list[str] = field(default_factory=lambda: ["knn", "linear", "kmeans", "fewshot"])
    compare: list[str] = field(default_factory=lambda: ["random"])  # baselines: random (same arch), pixels, checkpoints
    size: int = 32  # real images are resized to this side (match views.size)
    limit: int | None = None  # subsample the training split (None = all), stratified and seeded
    test_limit: int | None = None
    knn_k: int = 20  # the k-NN headline number (DINO: 20)
    knn_extra_k: list[int] = field(default_factory=lambda: [20, 200])  # also reported, from the same neighbour search
    knn_temperature: float = 0.07
    kmeans_n_init: int = 3  # k-means restarts (seeded); k = number of classes, fitted on the test features
    fewshot_shots: list[int] = field(default_factory=lambda: [1, 5, 10])  # labelled training images per class
    fewshot_draws: int = 5  # seeded draws of those images; mean and std over draws are reported
    finetune_epochs: int = 10  # protocol finetune: epochs of full fine-tuning (AdamW, cosine) on the train split
    pool: str | None = None  # ViT features for every encoder: token (CLS) | avg (patch mean); None = each run's own
    seed: int = 0  # seeds subsampling, validation split, k-means and few-shot draws
    batch_size: int = 512  # feature-extraction batch
    skip_bad: bool = False  # skip unreadable files in an ImageFolder (counted and reported) instead of stopping

    def __post_init__(self) -> None:
        check_ranges(self, "eval", size=SIZE_RULE, limit=">=1", test_limit=">=1", knn_k=">=1", knn_temperature=">0",
                     batch_size=">=1", knn_extra_k=">=1", kmeans_n_init=">=1", fewshot_shots=">=1",
                     fewshot_draws=">=1", finetune_epochs=">=1")
        if self.pool is not None:
            check_choices(self, "eval", pool=("token", "avg"))


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "simclr"})  # name + the method's own options
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- building


def _closest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where} = {value!r}: expected {hint}")
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) else [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: expected a mapping")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: expected a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    return value


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}.{_closest(key, names)} Valid keys: {', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_dataclass(hint, value or {}, path)
        else:
            kwargs[key] = _check_type(value, hint, path)
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    cfg = build_dataclass(Config, values, "")
    if "name" not in cfg.method:
        raise ConfigError("method.name is missing: set it, e.g. method=simclr")
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """'trainer.steps=200' -> (['trainer', 'steps'], 200); values are parsed as YAML scalars or lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. trainer.steps=200")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    return key.split("."), parse_yaml(raw, f"override {text!r}") if raw else ""


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested mapping; 'method=byol' is short for 'method.name=byol'.

    Choosing another method drops the options set so far for the previous one (a preset's method.temperature
    does not carry over to BYOL); options given after the name apply to the new method.
    """
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        last = path[-1]
        if path in (["method"], ["method", "name"]):
            method = node.setdefault("method", {}) if len(path) == 1 else node
            if method.get("name") != value:  # another method: the preset's options belong to the old one
                method.clear()
            method["name"] = value
        else:
            node[last] = value
    return values


def preset_path(preset: str) -> Path:
    """A preset name ('demo') in configs/, or a path to a YAML file."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    path = CONFIG_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {preset!r}.{_closest(preset, names)} Presets: {', '.join(names)}")
    return path


def merge_preset(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` on top of `base`, section by section; a child naming another method drops the base's method options."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            same_method = key != "method" or value.get("name", out[key].get("name")) == out[key].get("name")
            out[key] = {**out[key], **value} if same_method else dict(value)
        else:
            out[key] = value
    return out


def read_preset(preset: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's values; `base: other_preset` at its top inherits from another preset (changes only are listed).
    `base: [a, b]` stacks several: b on top of a, this file on top of both (e.g. a GPU preset plus a fragment under
    configs/parts/ that holds one option set shared by a CPU and a GPU preset)."""
    path = preset_path(preset)
    if str(path) in seen:
        raise ConfigError(f"presets inherit from each other in a loop: {' -> '.join(seen + (str(path),))}")
    values = parse_yaml(path.read_text(), f"config file {path}") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, views, model, method, trainer, eval)")
    base = values.pop("base", None)
    bases = base if isinstance(base, list) else [base] if base else []
    if not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: base must be a preset name or a list of them, e.g. base: demo or "
                          f"base: [data2vec_gpu, parts/cls_multicrop]; got {base!r}")
    merged: dict[str, Any] = {}
    for name in bases:
        merged = merge_preset(merged, read_preset(name, seen + (str(path),)))
    return merge_preset(merged, values)


def load_config(preset: str | None = "demo", overrides: list[str] | None = None) -> Config:
    values = read_preset(preset) if preset else {}
    return config_from_dict(apply_overrides(values, list(overrides or [])))


def split_family(spec: str | dict) -> tuple[str, str | None]:
    """'dead_leaves/mixed' -> ('dead_leaves', 'mixed'); 'spectrum' -> ('spectrum', None); options are dropped."""
    parsed = parse_family_spec(spec)
    return parsed.family, parsed.variant

"""Command line: synthsight generate | pretrain | eval | finetune | report | demo | distill | export | verify | study.

Each command writes one folder (or checks one) and names it at the end.

Thin by design: every command parses its flags and calls the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from synthsight import __version__
from synthsight.allocator import keep_freed_memory
from synthsight.outputs import check_out_path, is_empty, os_error_message

EPILOG = "Configs: presets in configs/*.yaml; override any key with dotted KEY=VALUE, e.g. trainer.steps=200."


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="render procedural images: a preview grid or a PNG data set",
                       description="Render images of one procedural family. With --preview, a PNG grid; with "
                       "--out, one PNG per image plus manifest.json (SHA-256 per image).")
    p.add_argument("--family", required=True,
                   help="generator family[/variant][:key=value,...], e.g. dead_leaves, fractal_ifs/fractaldb:num_classes=100")
    p.add_argument("--variant", default=None, help="family variant (default: the family's first), e.g. mixed")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a generator option (repeatable), e.g. --option num_classes=100; see docs/GENERATORS.md")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="stream seed; image i depends only on (family, seed, i)")
    p.add_argument("--preview", type=Path, default=None, help="write a grid PNG here")
    p.add_argument("--out", type=Path, default=None, help="write PNG files + manifest.json into this folder")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel writer processes for --out")
    p.add_argument("--layout", choices=("flat", "classes"), default="flat",
                   help="with --out: flat (class labels in manifest.json) or classes (one sub-folder per class, "
                   "readable by any ImageFolder loader)")
    p.add_argument("--device", default="cpu", help="render on cpu or cuda")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a backbone on a synthetic stream", epilog=EPILOG,
                       description="Pretrain with a self-supervised method on procedurally generated images. "
                       "Checkpoints (safetensors, atomic) go to OUT/checkpoints; --resume continues a run. "
                       "trainer.minutes=M trains for M minutes instead of trainer.steps (then the upper bound), the "
                       "learning-rate schedule following the clock.")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides, e.g. method=simclr trainer.steps=200")
    p.add_argument("--preset", default="demo", help="preset name in configs/ or a YAML path (default demo)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/pretrain-<time>)")
    p.add_argument("--resume", type=Path, nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR (or in --out) from its newest good checkpoint")
    p.add_argument("--eval", action="store_true", help="evaluate on real data after pretraining (eval.* keys)")
    p.add_argument("--print-config", action="store_true",
                   help="print the full configuration (preset + overrides, every key) as YAML and exit")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on real data with frozen features",
                       description="Frozen-feature protocols for the checkpoint and for baselines computed in the same "
                       "run: knn (cosine, weighted exp(s/0.07), k=20 and k=200), linear (logistic regression, L2 "
                       "chosen on a validation split), kmeans (k = classes, on the test features: NMI, ARI, Hungarian "
                       "accuracy), fewshot (nearest class mean, 1/5/10 images per class, mean ± std over 5 draws); "
                       "finetune (full fine-tuning, slow) on request. Writes metrics.json, metrics.csv, per_class.csv "
                       "and table.md.")
    p.add_argument("checkpoint", type=Path, help="a run folder (its newest good checkpoint) or checkpoints/step-N")
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    p.add_argument("--test-data", default="fashion-mnist",
                   help="test images, same forms (named sets and CIFAR/STL-10 folders give their test split)")
    p.add_argument("--protocols", default="knn,linear,kmeans,fewshot",
                   help="comma-separated: knn, linear, kmeans, fewshot, finetune (default knn,linear,kmeans,fewshot)")
    p.add_argument("--compare", default="random",
                   help="baselines, comma-separated: random (same architecture), pixels, or checkpoint paths; '' for none")
    p.add_argument("--size", type=int, default=None, help="resize real images to this side (default: the run's view size)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training images")
    p.add_argument("--test-limit", type=int, default=None, help="use at most this many test images")
    p.add_argument("--k", type=int, default=20,
                   help="neighbours for the k-NN headline number (default 20); k=20 and k=200 are reported as well")
    p.add_argument("--seed", type=int, default=0, help="seed of subsampling, validation split, k-means, few-shot draws")
    p.add_argument("--finetune-epochs", type=int, default=10, help="epochs of the finetune protocol (default 10)")
    p.add_argument("--pool", default=None, choices=["token", "avg"],
                   help="ViT features: token (the CLS token) or avg (mean of the patch tokens); default: the run's "
                   "model.pool. CNNs always average")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN_DIR/eval, or RUN_DIR/eval-DATA-PROTOCOLS-TIME when RUN_DIR/eval "
                   "already holds an evaluation)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output folder (default RUN_DIR/eval) if it already holds something")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or non-image files in an ImageFolder (counted) instead of stopping")
    p.add_argument("--no-analysis", action="store_true",
                   help="skip the feature analyses (t-SNE map, unit selectivity, retrieval, attention, per-class "
                   "plots and analysis.json; about 25 s on Fashion-MNIST with two CPU cores, mostly t-SNE)")


DATA_HELP = ("training images: fashion-mnist, photos (the photograph dev set: scripts/build_photo_patches.py), "
             "cifar10:DIR, cifar100:DIR (the python-version folders), stl10:DIR (stl10_binary), an ImageFolder dir "
             "<root>/<class>/<image> or .npz; a CIFAR/STL-10 folder is also recognised without the prefix")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint's backbone + a linear head on real labelled images",
                       description="Full fine-tuning (all weights) with AdamW and a warm-up + cosine schedule on the "
                       "real training split, random crop + flip; top-1 on the test split. Slower than `eval` (minutes "
                       "to hours). Writes OUT/metrics.json (result, settings, per-epoch history), history.csv and "
                       "per_class.csv. --init random gives the from-scratch baseline with the same recipe.")
    p.add_argument("checkpoint", type=Path, help="a run folder (its newest good checkpoint) or checkpoints/step-N")
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    p.add_argument("--test-data", default="fashion-mnist", help="test images, same forms")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training images (default 10)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on weights (default 0.05)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="linear warm-up (default 1, at most 10%% of training)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default 0)")
    p.add_argument("--layer-decay", type=float, default=1.0,
                   help="ViTs: layer-wise lr decay, block i of L at lr x decay^(L - i), embeddings at decay^(L + 1), "
                   "head at lr (MAE: 0.65-0.75; default 1 = off)")
    p.add_argument("--pool", default=None, choices=["token", "avg"],
                   help="ViT features fed to the head: token (CLS) or avg (mean of the patch tokens, MAE's choice); "
                   "default: the run's model.pool")
    p.add_argument("--head", default="linear", choices=["linear", "bn"],
                   help="the new head: linear (default) or bn = BatchNorm without affine, then linear (MAE's probe "
                   "head; standardises the features, which helps when they carry a large image-independent part)")
    p.add_argument("--no-augment", action="store_true", help="no random crop + flip")
    p.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--init", default="pretrained", choices=["pretrained", "random"],
                   help="start from the checkpoint (default) or from the run's random initialisation (baseline)")
    p.add_argument("--size", type=int, default=None,
                   help="resize real images to this side (default: the run's view size)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training images (stratified)")
    p.add_argument("--test-limit", type=int, default=None, help="use at most this many test images")
    p.add_argument("--seed", type=int, default=0, help="head init, batch order, augmentation, subsampling")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/finetune[-random])")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files in an ImageFolder")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild the report.html of a run or evaluation folder",
                       description="Write RUN_DIR/report.html: one self-contained page (no scripts, images inlined) "
                       "with every evaluation protocol's settings and numbers, the feature analyses, the training "
                       "curves, the config and the provenance. RUN_DIR may also be a folder from `eval --out`.")
    p.add_argument("run_dir", type=Path, help="a run folder, or an evaluation folder holding metrics.json")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole path on the embedded default: generate, pretrain, evaluate, report",
                       epilog=EPILOG,
                       description="SupCon on formula-labelled IFS fractals + RCDB contours with a small ConvNet on CPU (minutes), "
                       "then k-NN and linear probe on real Fashion-MNIST against random init and raw pixels.")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides of configs/demo.yaml")
    p.add_argument("--seed", type=int, default=None, help="seed for data stream, init and augmentations")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/demo-<time>)")
    p.add_argument("--print-config", action="store_true", help="print the demo's full configuration as YAML and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthsight", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"synthsight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from synthsight.study.cli import add_parser as _add_study

    for add in (_add_generate, _add_pretrain, _add_eval, _add_finetune,
                _add_report, _add_demo, _add_stats, _add_distill,
                _add_export, _add_verify, _add_study):
        add(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
    return parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it or there is none to state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.default is None or action.default is False  # (0 is a default)
                or action.default == argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction) or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


# ------------------------------------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> Path:
    from synthsight.generators import create_generator
    from synthsight.generators.io import save_grid, write_dataset

    from synthsight.family_spec import parse_options

    options = parse_options(",".join(args.option), "--option")
    gen = create_generator(args.family, args.variant, args.size, **options)
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.out is not None:
        write_dataset(gen, args.n, args.seed, args.out, workers=args.workers, layout=args.layout)
        print(f"wrote {args.n} images and manifest.json to {args.out}")
        return args.out
    preview = args.preview or default_dir("generate") / f"{gen.family}_{gen.variant}.png"
    preview.parent.mkdir(parents=True, exist_ok=True)
    save_grid(gen.generate(range(args.n), args.seed, args.device).cpu(), preview)
    print(f"wrote preview grid {preview}")
    return preview


def _check_size(size: int | None, flag: str = "--size") -> None:
    from synthsight.config import MAX_IMAGE_SIZE

    if size is not None and not 1 <= size <= MAX_IMAGE_SIZE:
        raise ValueError(f"{flag} {size}: must be in 1..{MAX_IMAGE_SIZE} pixels")


def default_dir(kind: str) -> Path:
    from synthsight.runs import default_run_dir

    return default_run_dir(kind)


def _eval_device(device_name: str) -> str:
    """The device evaluation runs on: the run's trainer.device, with 'auto' resolved as for training."""
    from synthsight.config import check_device
    from synthsight.train.distributed import resolve_device

    check_device(device_name, "--device")
    return str(resolve_device(device_name))


def _run_config(args: argparse.Namespace, extra: list[str]):
    from synthsight.config import load_config

    return load_config(args.preset, list(args.overrides) + extra)


def _print_config(args: argparse.Namespace) -> int:
    """`--print-config`: the configuration a run would use (of the run folder, for --resume), as YAML."""
    import yaml

    from synthsight.config import apply_overrides, config_from_dict

    if isinstance(args.resume, Path):
        cfg = config_from_dict(apply_overrides(json.loads((args.resume / "config.json").read_text()), args.overrides))
    else:
        cfg = _run_config(args, [])
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> Path:
    from synthsight.config import config_from_dict, apply_overrides
    from synthsight.eval.run import results_table
    from synthsight.report.html import build_report
    from synthsight.runs import eval_run, pretrain_run
    from synthsight.distributed import is_main_process
    from synthsight.train.loop import read_run_config

    resume = args.resume is not None
    if args.print_config:
        return _print_config(args)
    run_dir = args.resume if isinstance(args.resume, Path) else args.out
    if resume:
        if run_dir is None or not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"--resume needs a run folder holding config.json; got {run_dir}")
        check_out_path(run_dir, "--resume")
        cfg = config_from_dict(apply_overrides(read_run_config(run_dir), args.overrides))
    else:
        cfg = _run_config(args, [])
        run_dir = run_dir or default_dir("pretrain")
    result = pretrain_run(cfg, run_dir, resume=resume)
    if not is_main_process():  # under torchrun only rank 0 reports
        return run_dir
    if result.finished_before:
        print(f"{run_dir} had already finished its {result.steps} steps; wrote its missing provenance.json "
              f"(raise trainer.steps to train further)\nrun folder: {run_dir}")
        return run_dir
    print(f"pretrained {result.steps} steps in {result.seconds:.0f} s ({result.images_per_second:.0f} img/s), "
          f"final loss {result.final_loss:.4f}")
    if args.eval:  # the run's own evaluation: replaced as a whole when a resumed run is evaluated again
        report = eval_run(run_dir, cfg.eval, run_dir / "eval", device=_eval_device(cfg.trainer.device), overwrite=True)
        print(results_table(report.encoders, cfg.eval.protocols))
    print(f"run folder: {run_dir}\nreport: {build_report(run_dir)}")
    return run_dir


def cmd_eval(args: argparse.Namespace) -> Path:
    from synthsight.config import EvalConfig
    from synthsight.eval.run import load_backbone, results_table
    from synthsight.report.html import build_report
    from synthsight.runs import eval_run

    _, run_cfg, ckpt = load_backbone(args.checkpoint)
    cfg = EvalConfig(
        data=args.data, test_data=args.test_data, protocols=[p for p in args.protocols.split(",") if p],
        compare=[c for c in args.compare.split(",") if c], size=args.size or run_cfg.views.size,
        limit=args.limit, test_limit=args.test_limit, knn_k=args.k, skip_bad=args.skip_bad, seed=args.seed,
        finetune_epochs=args.finetune_epochs, pool=args.pool,
    )
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    out = args.out or (run_dir / "eval" if run_dir else default_dir("eval"))
    if args.out is None and run_dir is not None and not args.overwrite and not is_empty(out):
        out = run_dir / eval_folder_name(cfg)  # each evaluation its own folder: never mixed with an earlier one
        print(f"note: {run_dir / 'eval'} holds an earlier evaluation; this one goes to {out} (--overwrite replaces "
              "the earlier one instead)")
    report = eval_run(args.checkpoint, cfg, out, device=_eval_device(args.device), analysis=not args.no_analysis,
                      overwrite=args.overwrite)
    print(results_table(report.encoders, cfg.protocols))
    print(f"report: {build_report(run_dir if run_dir is not None and out == run_dir / 'eval' else out)}")
    print(f"eval folder: {out}")
    return out


def eval_folder_name(cfg) -> str:
    """eval-DATA-PROTOCOLS-TIME, e.g. eval-fashion-mnist-knn+linear-20250101-120000 (file-name safe)."""
    import re

    spec = cfg.data.rstrip("/\\")
    data = spec.split(":", 1)[0] if ":" in spec and not Path(spec).exists() else Path(spec).name
    name = "-".join([re.sub(r"[^A-Za-z0-9._+-]+", "_", data)[:40], "+".join(cfg.protocols)[:60],
                     time.strftime("%Y%m%d-%H%M%S")])
    return f"eval-{name}"


def cmd_finetune(args: argparse.Namespace) -> Path:
    from synthsight.eval.finetune import FinetuneSettings
    from synthsight.runs import finetune_run
    from synthsight.checkpoint import resolve_checkpoint

    settings = FinetuneSettings(
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, augment=not args.no_augment,
        amp=not args.no_amp, seed=args.seed, layer_decay=args.layer_decay, head=args.head,
    )
    ckpt = resolve_checkpoint(args.checkpoint)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    name = "finetune" if args.init == "pretrained" else "finetune-random"
    out = args.out or (run_dir / name if run_dir else default_dir(name))
    run = finetune_run(args.checkpoint, out, args.data, args.test_data, settings, init=args.init, size=args.size,
                       limit=args.limit, test_limit=args.test_limit, device=_eval_device(args.device),
                       skip_bad=args.skip_bad, pool=args.pool)
    print(run.result.describe())
    print(f"finetune folder: {out}")
    return out


def cmd_report(args: argparse.Namespace) -> Path:
    from synthsight.report.html import build_report

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run folder {args.run_dir} does not exist")
    path = build_report(args.run_dir)
    print(f"report: {path}")
    return path


def cmd_demo(args: argparse.Namespace) -> Path:
    from synthsight.config import load_config
    from synthsight.eval.run import results_table
    from synthsight.family_spec import families_label
    from synthsight.report.html import build_report
    from synthsight.runs import eval_run, pretrain_run

    extra = [] if args.seed is None else [f"data.seed={args.seed}", f"trainer.seed={args.seed}"]
    cfg = load_config("demo", list(args.overrides) + extra)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    run_dir = args.out or default_dir("demo")
    t0 = time.perf_counter()
    families = families_label(cfg.data.families)
    print(f"synthsight demo: {cfg.method['name']} on {families} with {cfg.model.backbone}, "
          f"{cfg.trainer.steps} steps x {cfg.trainer.batch_size} images; run folder {run_dir}")
    pretrain_run(cfg, run_dir)
    report = eval_run(run_dir, cfg.eval, run_dir / "eval", device=_eval_device(cfg.trainer.device), overwrite=True)
    path = build_report(run_dir)
    print(f"\n{results_table(report.encoders, cfg.eval.protocols)}\n")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s\nreport: {path}\nrun folder: {run_dir}")
    return run_dir


# ------------------------------------------------------------------------- distill, export, verify (issue 7)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil one teacher or an ensemble into a smaller student on synthetic images",
                       epilog=EPILOG + " The student is model.* of the preset (demo: the small ConvNet).",
                       description="Teach a student on the synthetic stream only (no labels): soft targets from the "
                       "teachers' averaged head outputs (MEAL V2) and cosine matching of their embeddings through a "
                       "linear adapter. The run folder works with eval and export like any pretraining run.")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides, e.g. trainer.steps=300 model.width=32")
    p.add_argument("--teacher", action="append", type=Path, default=[], metavar="CHECKPOINT",
                   help="teacher run folder or checkpoints/step-N; repeat for an ensemble")
    p.add_argument("--preset", default="demo", help="preset for the student's data, views, model and trainer")
    p.add_argument("--loss", default=None, choices=["auto", "soft", "feature", "both"],
                   help="auto (default): soft targets + feature matching when the teachers' heads share one width, "
                   "else feature matching only")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature of the soft targets (default 1)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/distill-<time>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a killed distillation run")
    p.add_argument("--eval", action="store_true",
                   help="then evaluate the student and every teacher with the same protocols (eval.* keys)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint: safetensors for timm, ONNX, a model card, provenance",
                       description="Write backbone weights (safetensors with a timm config.json when timm can rebuild "
                       "the network), an ONNX graph checked with onnxruntime, README.md (the model card) and "
                       "provenance.json with the SHA-256 of every exported file.")
    p.add_argument("checkpoint", type=Path, help="a run folder (its newest good checkpoint) or checkpoints/step-N")
    p.add_argument("--format", default="safetensors,onnx", help="comma-separated: safetensors, onnx (default both)")
    p.add_argument("--with-head", action="store_true", help="also export the method's head (e.g. SimCLR projector)")
    p.add_argument("--out", type=Path, default=None, help="export folder (default RUN_DIR/export)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the export folder even if it holds files that are not an earlier export")


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-check a provenance.json: regenerate sample images, compare hashes",
                       description="Regenerate the recorded sample of training images with this code, compare their "
                       "SHA-256, check the config, generator versions, image ranges and weights files. Prints PASS "
                       "(exit 0) or exactly what differs (exit 1).")
    p.add_argument("provenance", type=Path, help="a provenance.json, or a run or export folder holding one")


def cmd_distill(args: argparse.Namespace) -> Path:
    import dataclasses

    from synthsight.config import apply_overrides, config_from_dict, read_preset
    from synthsight.runs import eval_run, pretrain_run
    from synthsight.checkpoint import resolve_checkpoint
    from synthsight.distributed import is_main_process

    if args.resume is not None:
        return cmd_pretrain(argparse.Namespace(resume=args.resume, out=None, overrides=args.overrides,
                                               eval=args.eval, preset=None))
    if not args.teacher:
        raise ValueError("name at least one teacher: --teacher RUN_DIR (repeat it for an ensemble)")
    values = read_preset(args.preset)
    method = {"name": "distill", "teachers": [str(resolve_checkpoint(t)) for t in args.teacher]}
    method.update({k: v for k, v in (("loss", args.loss), ("temperature", args.temperature)) if v is not None})
    values["method"] = method  # the preset's own method options belong to another method
    cfg = config_from_dict(apply_overrides(values, list(args.overrides)))
    run_dir = args.out or default_dir("distill")
    print(f"synthsight distill: {len(method['teachers'])} teacher(s) -> {cfg.model.backbone}, {cfg.trainer.steps} "
          f"steps x {cfg.trainer.batch_size} synthetic images; run folder {run_dir}")
    result = pretrain_run(cfg, run_dir)
    if not is_main_process():
        return run_dir
    print(f"distilled {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.4f}")
    if args.eval:
        from synthsight.eval.run import results_table

        eval_cfg = dataclasses.replace(cfg.eval, compare=list(cfg.eval.compare) + method["teachers"])
        report = eval_run(run_dir, eval_cfg, run_dir / "eval", device=_eval_device(cfg.trainer.device),
                          overwrite=True)
        print(results_table(report.encoders, eval_cfg.protocols))
    print(f"run folder: {run_dir}")
    return run_dir


def cmd_export(args: argparse.Namespace) -> Path:
    from synthsight.export.exporter import export
    from synthsight.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    out = args.out or (run_dir / "export" if run_dir else default_dir("export"))
    info = export(ckpt, args.format, out, with_head=args.with_head, overwrite=args.overwrite)
    for name in info["files"]:
        print(f"  {out / name}")
    if info.get("timm_architecture"):
        print(f"timm: timm.create_model('{info['timm_architecture']}', pretrained=True, num_classes=0, "
              f"pretrained_cfg_overlay=dict(file='{out / 'model.safetensors'}'))")
    else:
        print(f"WARNING: this export does NOT load with timm alone: {info.get('timm_reason')}", file=sys.stderr)
    if "onnx" in info:
        print(f"onnx: matches PyTorch within rtol={info['onnx']['rtol']}, atol={info['onnx']['atol']} "
              f"(max |diff| {info['onnx']['max_abs_diff']})")
    print(f"export folder: {out}")
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    from synthsight.provenance import main_verify

    return main_verify(args.provenance)


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="image statistics of generator families beside natural photographs",
                       description="Power-spectrum slope, colour statistics and diversity of each family, next to "
                       "crops of scikit-image's bundled photographs (naturalness and diversity drive transfer).")
    p.add_argument("--family", default=None,
                   help="family[/variant], comma-separated, e.g. dead_leaves/mixed,spectrum (with --reference: default "
                   "every family that has reference figures)")
    p.add_argument("--reference", action="store_true",
                   help="compare with the figures measured on each family's reference code (slope, spread, std, "
                   "chroma, mean) and mark every figure outside tolerance")
    p.add_argument("--n", type=int, default=128, help="images per set (default 128)")
    p.add_argument("--size", type=int, default=128, help="image side (default 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images measured")
    p.add_argument("--out", type=Path, default=None, help="folder for stats.json/csv/md (default runs/stats-<time>)")


def cmd_stats(args: argparse.Namespace) -> Path:
    from synthsight.analysis.family_stats import compare_with_natural, stats_table, write_stats
    from synthsight.family_spec import join_split_options

    if args.n < 2:
        raise ValueError(f"--n must be >= 2 to measure diversity, got {args.n}")
    if args.reference:
        return _stats_reference(args)
    if not args.family:
        raise ValueError("--family is required (or --reference for every family with reference figures)")
    rows = compare_with_natural(join_split_options([f for f in args.family.split(",") if f]), args.n, args.size, args.seed)
    out = args.out or default_dir("stats")
    write_stats(rows, out)
    print(stats_table(rows))
    print(f"stats folder: {out}")
    return out


def _stats_reference(args: argparse.Namespace) -> Path:
    import json

    from synthsight.analysis.reference_stats import compare_with_reference, reference_table

    names = join_split_options([f for f in (args.family or "").split(",") if f]) or None
    rows = compare_with_reference(names, args.n, args.size, args.seed)
    out = args.out or default_dir("stats")
    out.mkdir(parents=True, exist_ok=True)
    table = reference_table(rows)
    (out / "reference.json").write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    (out / "reference.md").write_text(table + "\n")
    print(table)
    print(f"stats folder: {out}")
    return out


def cmd_study(args: argparse.Namespace) -> Path:
    from synthsight.study.cli import cmd_study as run

    return run(args)


COMMANDS = {"generate": cmd_generate, "pretrain": cmd_pretrain, "eval": cmd_eval, "finetune": cmd_finetune,
            "report": cmd_report,
            "demo": cmd_demo, "distill": cmd_distill, "export": cmd_export, "verify": cmd_verify, "stats": cmd_stats,
            "study": cmd_study}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "out", None) is not None:
            check_out_path(args.out)
        _check_size(getattr(args, "size", None))
        keep_freed_memory()  # CPU training and evaluation reuse their large buffers (synthsight/allocator.py)
        code = COMMANDS[args.command](args)  # an int is an exit status (verify: 1 = FAIL); a Path means success
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if os.environ.get("SYNTHSIGHT_DEBUG"):
            raise
        print(f"synthsight {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder: one line, not a traceback
        if os.environ.get("SYNTHSIGHT_DEBUG"):
            raise
        message = os_error_message(err, resume_hint=args.command in ("pretrain", "distill", "demo"))
        print(f"synthsight {args.command}: error: {message}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())

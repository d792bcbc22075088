"""A collapse alarm for self-supervised training: cheap figures of the embeddings a method's loss compares, checked
every few steps, a warning when they say "collapsed", and a clean stop after several collapsed checks in a row.

Figures (pure functions of tensors):
- `embedding_std`: mean per-dimension standard deviation of the L2-normalised embeddings Tensor[N, D]. Healthy
  embeddings spread over the sphere give about 1/sqrt(D); a complete collapse (every image mapped to one point)
  gives 0 (SimSiam, Chen & He 2021, section 4).
- `effective_rank`: exp of the entropy of the normalised singular values of the L2-normalised embeddings (Roy &
  Vetterli 2007): D for embeddings spread evenly over D orthogonal directions, 1 when every row is the same
  (dimensional collapse, Jing et al. 2022, shows as a small rank).
- `mean_entropy` of a teacher's output probabilities Tensor[N, K] (DINO, Caron et al. 2021): close to ln K means a
  uniform output for every image (DINO's loss then sticks at ln K); a dominant argmax shared by nearly every image
  (`argmax_share` near 1) is the one-hot collapse that centring is there to prevent.

Example:
    >>> monitor = CollapseMonitor.from_config(cfg.trainer)
    >>> figures = monitor.check(step_output, step=200, last_good=run_dir / "checkpoints" / "step-000100")
    >>> figures.as_log()     # {'emb_std': '0.0812', 'eff_rank': '37.2', ...}; raises CollapseError after patience
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

MAX_ROWS = 1024  # figures use at most this many embeddings (an SVD of 1024 x D stays a few milliseconds)
MIN_ROWS_FOR_ARGMAX = 16  # with fewer images a shared argmax is too likely by chance to mean anything

FIXES = (
    "Try a lower trainer.lr (or a longer trainer.warmup_steps); a higher method.temperature (contrastive methods), "
    "for DINO a higher method.centre_momentum or a lower method.teacher_temp when its output goes uniform; stronger "
    "augmentation (a smaller views.crop_scale_min, more colour jitter); then go on from the last good checkpoint "
    "with --resume and the changed options"
)


class CollapseError(RuntimeError):
    """The embeddings collapsed for several checks in a row; the message names the figure, the step, the last good
    checkpoint and what to change."""


def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the std over rows of the L2-normalised rows of Tensor[N, D] (N >= 2)."""
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"need embeddings Tensor[N, D] with N >= 2, got shape {tuple(z.shape)}")
    return float(F.normalize(z.detach().float(), dim=1).std(dim=0).mean())


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy of s / sum(s)) for the singular values s of the L2-normalised rows of Tensor[N, D]: in
    [1, min(N, D)]; 1 for identical rows, D for D orthonormal rows."""
    if z.ndim != 2 or len(z) < 1:
        raise ValueError(f"need embeddings Tensor[N, D] with N >= 1, got shape {tuple(z.shape)}")
    s = torch.linalg.svdvals(F.normalize(z.detach().float().cpu(), dim=1))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return float(entropy.exp())


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of Tensor[N, K] (each a probability distribution): 0 for one-hot rows,
    ln K for uniform ones."""
    if probs.ndim != 2 or len(probs) < 1:
        raise ValueError(f"need probabilities Tensor[N, K], got shape {tuple(probs.shape)}")
    p = probs.detach().float()
    return float(-(p * p.clamp_min(1e-12).log()).sum(dim=1).mean())


def argmax_share(probs: torch.Tensor) -> float:
    """Fraction of the rows of Tensor[N, K] whose argmax is the most common argmax (1 = one class for everyone)."""
    top = probs.detach().argmax(dim=1)
    return float(torch.bincount(top).max()) / len(top)


@dataclass
class CollapseFigures:
    """What one check measured (None where the step gave nothing to measure) and which limits it broke."""

    step: int
    emb_std: float | None = None
    std_floor: float | None = None  # collapse_min_std / sqrt(D)
    eff_rank: float | None = None
    rank_floor: float | None = None
    teacher_entropy: float | None = None
    entropy_ceiling: float | None = None  # collapse_max_entropy x ln K
    argmax_share: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def collapsed(self) -> bool:
        return bool(self.problems)

    def as_log(self) -> dict[str, str]:
        """The train_log.csv columns (see LOG_FIELDS in train.loop)."""
        values = {"emb_std": self.emb_std, "eff_rank": self.eff_rank, "teacher_entropy": self.teacher_entropy}
        return {k: f"{v:.4g}" for k, v in values.items() if v is not None}


class CollapseMonitor:
    """Checks each StepOutput it is given; warns on a collapsed check; raises CollapseError after `patience`
    collapsed checks in a row. Thresholds as in TrainerConfig's collapse_* fields."""

    def __init__(self, min_std: float = 0.1, min_rank: float = 2.0, max_entropy: float = 0.98,
                 max_argmax_share: float = 0.9, patience: int = 5) -> None:
        self.min_std, self.min_rank = min_std, min_rank
        self.max_entropy, self.max_argmax_share = max_entropy, max_argmax_share
        self.patience = patience
        self.streak = 0  # collapsed checks in a row
        self.last_healthy_step: int | None = None
        self.last: CollapseFigures | None = None

    @classmethod
    def from_config(cls, t) -> "CollapseMonitor":
        """From a TrainerConfig."""
        return cls(t.collapse_min_std, t.collapse_min_rank, t.collapse_max_entropy, t.collapse_max_argmax_share,
                   t.collapse_patience)

    def measure(self, embeddings: torch.Tensor | None, teacher_probs: torch.Tensor | None,
                step: int) -> CollapseFigures:
        """The figures of one step's embeddings Tensor[N, D] and teacher probabilities Tensor[N, K] (either may be
        None), compared with the thresholds."""
        f = CollapseFigures(step)
        if embeddings is not None and embeddings.ndim == 2 and len(embeddings) >= 2:
            z = embeddings[:MAX_ROWS]
            n, d = z.shape
            f.emb_std, f.std_floor = embedding_std(z), self.min_std / math.sqrt(d)
            # a rank floor above what N x D allows would always fire on tiny batches or narrow embeddings
            f.eff_rank, f.rank_floor = effective_rank(z), min(self.min_rank, min(n, d) / 2)
            if f.emb_std < f.std_floor:
                f.problems.append(f"embedding std {f.emb_std:.3g} is below trainer.collapse_min_std/sqrt(D) = "
                                  f"{self.min_std:g}/sqrt({d}) = {f.std_floor:.3g} "
                                  "(every image maps to about one point)")
            if f.eff_rank < f.rank_floor:
                f.problems.append(f"effective rank {f.eff_rank:.3g} of the embeddings is below {f.rank_floor:.3g} "
                                  "(trainer.collapse_min_rank; the embeddings span about one direction)")
        if teacher_probs is not None and teacher_probs.ndim == 2 and len(teacher_probs) >= 1:
            p = teacher_probs[:MAX_ROWS]
            k = p.shape[1]
            f.teacher_entropy, f.entropy_ceiling = mean_entropy(p), self.max_entropy * math.log(k)
            f.argmax_share = argmax_share(p)
            if k > 1 and f.teacher_entropy > f.entropy_ceiling:
                f.problems.append(f"teacher entropy {f.teacher_entropy:.4g} is above trainer.collapse_max_entropy x "
                                  f"ln K = {self.max_entropy:g} x ln {k} = {f.entropy_ceiling:.4g} (uniform output "
                                  f"for every image; the loss sticks at ln K = {math.log(k):.4g})")
            if len(p) >= MIN_ROWS_FOR_ARGMAX and f.argmax_share >= self.max_argmax_share:
                f.problems.append(f"{100 * f.argmax_share:.0f}% of the images share the teacher's argmax "
                                  f"(trainer.collapse_max_argmax_share = {self.max_argmax_share:g}; one-hot collapse)")
        return f

    def check(self, out, step: int, last_good: Path | None = None) -> CollapseFigures:
        """Measure a StepOutput at `step` (steps done); warn if collapsed; raise CollapseError after patience.

        `last_good`: the newest checkpoint written no later than the last healthy check (named in the error)."""
        f = self.measure(out.embeddings, out.teacher_probs, step)
        self.last = f
        if not f.collapsed:
            self.streak, self.last_healthy_step = 0, step
            return f
        self.streak += 1
        what = "; ".join(f.problems)
        if self.streak >= self.patience:
            where = (f"the last good checkpoint is {last_good}" if last_good is not None
                     else "no checkpoint was written before the collapse")
            raise CollapseError(
                f"training collapsed: {what} at step {step}, {self.streak} checks in a row (trainer.collapse_patience="
                f"{self.patience}); stopped before writing another checkpoint; {where}. {FIXES}. "
                "trainer.collapse_check_every=0 turns the alarm off"
            )
        tqdm.write(f"warning: step {step}: possible collapse: {what} (check {self.streak} of "
                   f"trainer.collapse_patience={self.patience} before the run stops)", file=sys.stderr)
        return f

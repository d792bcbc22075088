"""IFS fractals: attractors of random affine iterated function systems, rendered by a parallel chaos game.

Variants (each category is one IFS; `num_classes` categories, the image's class in params["label"]; the systems
and their instances are described in ifs/systems.py):
    svd             Anderson & Farrell (WACV 2022): svd-sampled, always contractive systems of 2..4 maps, drawn
                    as in their generator (style "anderson", ifs/anderson.py): density-coloured fractal with a
                    random 3 x 3 patch per point, zoomed 0.5-2x and shifted up to 0.2, transposed / mirrored, over a
                    coloured diamond-square background, blurred half the time. `num_classes=None` draws a fresh
                    system for every image instead.
    fractaldb       FractalDB (Kataoka et al., ACCV 2020): searched systems of 2..7 maps, instances by FractalDB's
                    25 parameter weights, drawn as FractalDB's grey patch stipple on black (style "stipple",
                    ifs/stipple.py).
    1p_frac         1p-frac (Nakamura et al., ECCV 2024): perturbed copies of ONE system, one category each, drawn
                    as 1p-frac does, with FractalDB's stipple.
    fractaldb_color FractalDB's systems and instances in the family's version-1 look (style "colour",
                    ifs/colour.py): density-coloured over a black, smooth or textured background.

Any variant may be drawn in any style (option `style`). A category's system is a pure function of (variant,
`category_seed`, label), computed once per process and cached; the label and all instance variation come from the
image's own generator. The chaos game (ifs/points.py) runs `chains` parallel chains per image over the whole batch;
flips are applied to the systems (conjugation), so they cost nothing per point.

Example:
    >>> gen = GENERATORS.create("fractal_ifs", variant="fractaldb", size=128)
    >>> images, labels = gen.generate_with_labels(range(16), seed=0)   # [16, 3, 128, 128], [16] in [0, 1000)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from synthsight.generators.base import Generator, image_rng
from synthsight.generators.ifs import anderson, colour, stipple
from synthsight.generators.ifs.points import BANK, chaos_game, conjugate
from synthsight.generators.ifs.systems import (JITTER_TRIES, MAX_MAPS, WEIGHT_ROWS, anderson_jitter, fractaldb_categories,
                                               fractaldb_instance, one_p_copy, svd_category, svd_system)
from synthsight.registry import GENERATORS

STYLES = ("anderson", "stipple", "colour")
_DEFAULT_STYLE = {"svd": "anderson", "fractaldb": "stipple", "1p_frac": "stipple", "fractaldb_color": "colour"}


@GENERATORS.register("fractal_ifs")
class FractalIFS(Generator):
    """Random IFS attractors; see the module docstring.

    Args:
        variant: "svd" (default), "fractaldb", "1p_frac" or "fractaldb_color".
        size: image side in pixels.
        num_classes: categories (systems); labels are uniform in [0, num_classes). None (svd only): every image
            draws its own system and has no label.
        category_seed: which set of categories (systems); the images' seed does not change them.
        style: "anderson", "stipple" or "colour"; default: the variant's own (svd: anderson, fractaldb and 1p_frac:
            stipple, fractaldb_color: colour).
        points: chaos-game points per image (default size^2: 16k at 128 px; the reference generators use 100k,
            which looks much the same and measures within the tolerances of synthsight stats --reference).
        chains: parallel chains per image (default points / 32 rounded down to a power of two, within [32, 1024]:
            512 at 128 px, 1024 for 100k points; more chains mean fewer, larger steps).
        background: style colour only: "black", "smooth", "textured" or "mixed" (each image picks one); default
            smooth for svd, mixed for the others.
        fill_threshold: FractalDB's filter (fraction of a coarse grid the attractor must cover).
        perturbation: D of 1p_frac (each parameter of a category times U(1 - D, 1 + D)).
    """

    family = "fractal_ifs"
    version = "2"  # 2: Anderson & Farrell and FractalDB renderers; FractalDB's weight-row instances
    variants = ("svd", "fractaldb", "1p_frac", "fractaldb_color")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        num_classes: int | None = 1000,
        category_seed: int = 0,
        style: str | None = None,
        points: int | None = None,
        chains: int | None = None,
        background: str | None = None,
        fill_threshold: float = 0.2,
        perturbation: float = 0.1,
    ) -> None:
        super().__init__(variant, size)
        self.systems = "fractaldb" if self.variant.startswith("fractaldb") else self.variant
        if num_classes is None and self.systems != "svd":
            raise ValueError(f"fractal_ifs/{self.variant} needs num_classes >= 1 (only svd can do without)")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        style = style or _DEFAULT_STYLE[self.variant]
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        points = size * size if points is None else int(points)
        if points < 64:
            raise ValueError(f"points must be >= 64, got {points}")
        if chains is None:
            chains = 1 << max(5, min(10, (points // 32).bit_length() - 1))
        if not 2 <= chains <= points:
            raise ValueError(f"chains must be in [2, points], got {chains}")
        if background is not None and style != "colour":
            raise ValueError(f"background is an option of style 'colour' only (style is {style!r}); drop it or set "
                             f"style='colour'")
        if style == "colour":
            background = background or ("smooth" if self.variant == "svd" else "mixed")
            if background not in colour.BACKGROUNDS + ("mixed",):
                raise ValueError(f"background must be one of {colour.BACKGROUNDS + ('mixed',)}, got {background!r}")
        if not 0.0 < fill_threshold < 1.0 or not 0.0 <= perturbation < 1.0:
            raise ValueError(f"need 0 < fill_threshold < 1 and 0 <= perturbation < 1, got {fill_threshold}, "
                             f"{perturbation}")
        self.num_classes = num_classes
        self.category_seed = int(category_seed)
        self.style = style
        self.points, self.chains = points, int(chains)
        self.burn_in = math.ceil(math.log2(self.chains)) + 2
        self.steps = self.burn_in + math.ceil(points / self.chains)
        self.background = background
        self.fill_threshold, self.perturbation = float(fill_threshold), float(perturbation)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "num_classes": self.num_classes,
            "category_seed": self.category_seed,
            "style": self.style,
            "points": self.points,
            "chains": self.chains,
            "background": self.background,
            "fill_threshold": self.fill_threshold,
            "perturbation": self.perturbation,
        }

    # ------------------------------------------------------------------------------------------ categories
    def category(self, label: int) -> torch.Tensor:
        """The system [n, 6] that defines category `label` (a pure function of variant, category_seed, label)."""
        if self.num_classes is None or not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label}")
        return self._system(int(label)).clone()

    def _system(self, label: int) -> torch.Tensor:
        """The cached system of category `label` (shared: not to be modified)."""
        if self.systems == "svd":
            return svd_category(self.category_seed, int(label))
        if self.systems == "fractaldb":
            return fractaldb_categories([label], self.category_seed, self.fill_threshold)[0]
        return one_p_copy(self.category_seed, self.fill_threshold, int(label), self.perturbation)

    def prepare_categories(self, labels: Sequence[int]) -> None:
        """Compute (and cache) the systems of `labels` in one vectorised search (fractaldb); optional."""
        if self.systems == "fractaldb":
            fractaldb_categories(labels, self.category_seed, self.fill_threshold)

    def generate_with_labels(
        self, indices: Sequence[int], seed: int, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.systems == "fractaldb" and len(indices) > 1:  # search the batch's new categories together
            self.prepare_categories([self._draw_label(image_rng(seed, int(i), self.salt)) for i in indices])
        return super().generate_with_labels(indices, seed, device)

    def _draw_label(self, rng: torch.Generator) -> int:
        return int(torch.randint(self.num_classes, (1,), generator=rng))

    # ------------------------------------------------------------------------------------------ parameters
    def sample_params(self, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """label [] int64 (absent when num_classes is None); maps [7, 6] (the instance's system, zero rows past
        n_maps), probs [7], n_maps [] int64; choices [steps] uint8 (bank permutation per chain step); then the
        style's own parameters (ifs/anderson.py, ifs/stipple.py, ifs/colour.py `sample`)."""
        params: dict[str, torch.Tensor] = {}
        if self.num_classes is None:
            rows = svd_system(rng, 2 + int(torch.randint(3, (1,), generator=rng))).tolist()
        else:
            label = self._draw_label(rng)
            params["label"] = torch.tensor(label, dtype=torch.int64)
            rows = self._system(label).tolist()
        dets = [abs(a * d - b * c) for a, b, c, d, _, _ in rows]
        probs = [x / max(sum(dets), 1e-30) for x in dets]
        if self.systems == "svd":  # Anderson & Farrell: probabilities from the jittered maps
            rows = anderson_jitter(rows, torch.rand(2 * JITTER_TRIES, generator=rng, dtype=torch.float64).tolist())
            dets = [abs(a * d - b * c) for a, b, c, d, _, _ in rows]
            probs = [x / max(sum(dets), 1e-30) for x in dets]
        elif self.systems == "fractaldb":  # FractalDB: the category's probabilities
            rows = fractaldb_instance(rows, probs, int(torch.randint(WEIGHT_ROWS, (), generator=rng)))
        n = len(rows)
        pad = MAX_MAPS - n
        flat = torch.tensor([x for r in rows for x in r] + [0.0] * (6 * pad) + probs + [0.0] * pad)
        params["maps"], params["probs"] = flat[: 6 * MAX_MAPS].view(MAX_MAPS, 6), flat[6 * MAX_MAPS :]
        params["n_maps"] = torch.tensor(n, dtype=torch.int64)
        params["choices"] = torch.randint(0, BANK, (self.steps,), generator=rng, dtype=torch.uint8)
        if self.style == "anderson":
            params.update(anderson.sample(rng, self.size))
        elif self.style == "stipple":
            params.update(stipple.sample(rng, self.size))
        else:
            params.update(colour.sample(rng, self.background))
        return params

    # ------------------------------------------------------------------------------------------ rendering
    def render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
        """Tensor[B, 3, S, S] in [0, 1]. On CPU in groups of images (their point buffers stay near the cache)."""
        device = torch.device(device)
        return self._render(params, device, grouped=device.type == "cpu")

    def _render(self, params: Sequence[dict[str, torch.Tensor]], device: torch.device, grouped: bool) -> torch.Tensor:
        """grouped (CPU): the chaos game runs ~1M points at a time (enough work per operation to amortise its fixed
        cost), and so does the anderson painter; the others ~128k points at a time (their arrays stay in the
        cache)."""
        out = torch.empty(len(params), 3, self.size, self.size, device=device)
        group = max(1, (1 << 20) // self.points) if grouped else len(params)
        chunk = max(1, (1 << 17) // self.points) if grouped and self.style != "anderson" else group
        keys = [k for k in params[0] if k != "label"]
        for start in range(0, len(params), group):
            part = {k: torch.stack([p[k] for p in params[start : start + group]]).to(device) for k in keys}
            maps = part["maps"] if self.style == "colour" else conjugate(part["maps"], part["flips"])
            xs, ys = chaos_game(maps, part["probs"], part["n_maps"], part["choices"], self.chains, self.burn_in)
            for first in range(0, xs.shape[1], chunk):
                rows = slice(first, first + chunk)
                few = {k: v[rows] for k, v in part.items()}
                target = out[start + first : start + first + few["maps"].shape[0]]
                if self.style == "anderson":
                    anderson.paint(xs[:, rows], ys[:, rows], few, target, per_image=grouped)
                elif self.style == "stipple":
                    stipple.paint(xs[:, rows], ys[:, rows], few, target)
                else:
                    colour.paint(xs[:, rows], ys[:, rows], few, target, contractive=self.systems != "fractaldb")
        return out

"""A family made of other families: weighted mixing, and MixUp of k images from different classes.

Shaders21k found MixUp of k=6 images from different programs the single biggest gain of synthetic pretraining.
Each image picks its families and its components' parameters from its own generator and passes its index on to
them (a stylegan_random component of image i renders with that child's network i // images_per_network), so the
contract holds: image i is a pure function of (config, seed, i).

Labels: classes of the components are offset per family (a family without categories counts as one class);
`mixup` images carry the label of their heaviest component, plus `mix_labels` and `mix_weights` for soft targets.
With `shared_labels=True` the families share one label space instead: category c of every family is class c. Mixing
one family's categories drawn in several looks (e.g. FractalDB's systems as grey stipple and in Anderson & Farrell's
colours) then makes the look a nuisance the formula labels teach the network to ignore.

Example:
    >>> gen = GENERATORS.create("mix", variant="mixup", size=64, families=("dead_leaves/mixed", "spectrum/color"))
    >>> images = gen.generate(range(8), seed=0)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from synthsight.config import split_family
from synthsight.generators.base import Generator
from synthsight.registry import GENERATORS


@GENERATORS.register("mix")
class Mix(Generator):
    family = "mix"
    version = "2"  # 2: components take the image's index (stylegan_random children used network 0 for every image)
    variants = ("uniform", "mixup")

    def __init__(
        self,
        variant: str | None = None,
        size: int = 128,
        families: Sequence[str | dict] = ("dead_leaves/mixed", "spectrum/color"),  # family[/variant][:opts] each
        weights: Sequence[float] | None = None,  # sampling weight per family; None = equal
        k: int = 6,  # images per MixUp (variant mixup); 6 was best in Shaders21k
        alpha: float = 1.0,  # Dirichlet concentration of the MixUp weights
        shared_labels: bool = False,  # category c of every family is class c (all need the same num_classes)
    ) -> None:
        super().__init__(variant, size)
        if not families:
            raise ValueError("mix needs at least one family, e.g. families=('dead_leaves/mixed', 'spectrum/color')")
        if any(split_family(f)[0] == "mix" for f in families):
            raise ValueError("mix cannot contain itself")
        from synthsight.generators import create_generator  # the package imports this module first

        self.children = [create_generator(f, size=size) for f in families]  # each child with its own options
        w = torch.tensor(list(weights) if weights is not None else [1.0] * len(families), dtype=torch.float64)
        if w.numel() != len(families) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be one non-negative number per family with a positive sum, got {weights}")
        if k < 1 or alpha <= 0:
            raise ValueError(f"need k >= 1 and alpha > 0, got k={k}, alpha={alpha}")
        self.weights, self.k, self.alpha = w / w.sum(), k, alpha
        sizes = [c.num_classes or 1 for c in self.children]
        self.shared_labels = bool(shared_labels)
        if self.shared_labels:
            counts = [c.num_classes for c in self.children]
            if len(set(counts)) != 1 or None in counts:
                raise ValueError(f"shared_labels needs families with categories, the same number each; got {counts} "
                                 f"for {list(families)}. Give each the same num_classes option, or drop shared_labels")
            self.offsets, self.num_classes = [0] * len(sizes), sizes[0]
        else:
            self.offsets = [sum(sizes[:j]) for j in range(len(sizes))]
            self.num_classes = sum(sizes)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k, "alpha": self.alpha, "weights": self.weights.tolist(),
                "shared_labels": self.shared_labels, "children": [c.config() for c in self.children]}

    def _component(self, rng: torch.Generator, index: int) -> dict[str, Any]:
        j = int(torch.multinomial(self.weights, 1, generator=rng))
        child_rng = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=rng)))
        params = self.children[j].params_at(child_rng, index)  # the child's image `index` (its network, ...)
        label = self.offsets[j] + (int(params["label"]) if "label" in params else 0)
        return {"family": j, "params": params, "label": label}

    def sample_params(self, rng: torch.Generator) -> dict[str, Any]:
        """Parameters as for image 0 (a stylegan_random child renders with its network 0); streams use
        image_params, which passes each image's index on to its components."""
        return self.params_at(rng, 0)

    def params_at(self, rng: torch.Generator, index: int) -> dict[str, Any]:
        if self.variant == "uniform":
            c = self._component(rng, index)
            return {"components": [c], "mix_weights": torch.ones(1), "label": torch.tensor(c["label"])}
        components: list[dict[str, Any]] = []
        for _ in range(self.k):
            for _attempt in range(8):  # components from different classes where the classes allow it
                c = self._component(rng, index)
                if all(c["label"] != other["label"] for other in components):
                    break
            components.append(c)
        e = -torch.log(torch.rand(self.k, generator=rng, dtype=torch.float64).clamp(min=1e-12))
        gammas = e if self.alpha == 1.0 else e.pow(1.0 / self.alpha)  # alpha=1: exact Dirichlet(1, ..., 1)
        mix = (gammas / gammas.sum()).float()
        labels = torch.tensor([c["label"] for c in components])
        return {"components": components, "mix_weights": mix, "mix_labels": labels,
                "label": labels[int(mix.argmax())]}

    def render(self, params: Sequence[dict[str, Any]], device: torch.device) -> torch.Tensor:
        flat = [c for p in params for c in p["components"]]
        layers = torch.empty(len(flat), 3, self.size, self.size, device=device)
        for j, child in enumerate(self.children):
            rows = [r for r, c in enumerate(flat) if c["family"] == j]
            if rows:
                layers[rows] = child.render([flat[r]["params"] for r in rows], device)
        out, start = [], 0
        for p in params:
            w = p["mix_weights"].to(device).view(-1, 1, 1, 1)
            out.append((layers[start:start + len(w)] * w).sum(dim=0))
            start += len(w)
        return torch.stack(out).clamp(0, 1)

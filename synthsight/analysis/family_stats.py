"""`synthsight stats`: a family's image statistics side by side with natural photographs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from synthsight.analysis.image_stats import ImageStatistics, image_statistics, natural_patches
from synthsight.family_spec import FamilySpec
from synthsight.generators import create_generator

COLUMNS = ("slope_mean", "slope_std", "saturation", "structure_diversity", "colour_diversity")


def stats_table(rows: dict[str, ImageStatistics]) -> str:
    """Markdown table: one row per image set."""
    head = "| images | n | spectrum slope (mean ± std) | mean RGB | saturation | structure diversity | colour diversity |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        rgb = ", ".join(f"{v:.2f}" for v in s.mean_rgb)
        lines.append(f"| {name} | {s.n} | {s.slope_mean:.2f} ± {s.slope_std:.2f} | {rgb} | {s.saturation:.2f} | "
                     f"{s.structure_diversity:.3f} | {s.colour_diversity:.3f} |")
    return "\n".join(lines)


def write_stats(rows: dict[str, ImageStatistics], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stats.json").write_text(json.dumps({k: v.to_dict() for k, v in rows.items()}, indent=1))
    with open(out_dir / "stats.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["images", "n", *COLUMNS])
        for name, s in rows.items():
            writer.writerow([name, s.n, *(f"{getattr(s, c):.4f}" for c in COLUMNS)])
    (out_dir / "stats.md").write_text(stats_table(rows) + "\n")


def compare_with_natural(specs: list, n: int = 128, size: int = 128, seed: int = 0) -> dict[str, ImageStatistics]:
    """Statistics of each family spec ('family[/variant][:options]') and of natural photo crops, same n and size."""
    rows = {}
    for spec in specs:
        gen = create_generator(spec, size=size)
        rows[FamilySpec(gen.family, gen.variant, gen.options).label] = image_statistics(gen.generate(range(n), seed))
    rows["natural photographs (scikit-image)"] = image_statistics(natural_patches(n, size, seed))
    return rows

"""Write docs/GENERATORS.md from the code: every family's variants, options (default and the comment beside it in
the constructor), previews, the `stats --reference` table and the `stats` table beside natural photographs.

    python scripts/generators_doc.py                 # the whole page (renders previews; ~2 min on 2 cores)
    python scripts/generators_doc.py --no-previews   # keep the existing preview PNGs
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthsight.analysis.family_stats import compare_with_natural, stats_table  # noqa: E402
from synthsight.analysis.reference_stats import compare_with_reference, reference_table  # noqa: E402
from synthsight.generators import GENERATORS, create_generator, generator_options  # noqa: E402
from synthsight.generators.io import save_grid  # noqa: E402

OPTION_LINE = re.compile(r"^\s*(\w+)\s*:[^=]*=\s*(.+?),?\s*#\s*(.*)$")


def option_comments(cls: type) -> dict[str, str]:
    """The comment written beside each constructor argument (its meaning), by name."""
    comments = {}
    for line in inspect.getsource(cls.__init__).splitlines():
        match = OPTION_LINE.match(line)
        if match:
            comments[match.group(1)] = match.group(3).strip()
    return comments


def family_section(name: str, previews: bool) -> str:
    cls = GENERATORS.get(name)
    doc = (inspect.getdoc(inspect.getmodule(cls)) or "").split("\n\n")[0].replace("\n", " ")
    gen = create_generator(name, size=32)
    labels = " Class labels: yes (`num_classes` option)." if gen.num_classes else ""
    lines = [f"## `{name}` (version {cls.version})", "", doc, "",
             f"Variants: {', '.join(f'`{v}`' for v in cls.variants)} (first = default).{labels}", "",
             "| option | default | meaning |", "|---|---|---|"]
    comments = option_comments(cls)
    for option, default in generator_options(name).items():
        lines.append(f"| `{option}` | `{default!r}` | {comments.get(option, '')} |")
    lines.append("")
    for variant in cls.variants:
        png = ROOT / "docs" / "img" / f"{name}_{variant}.png"
        if previews:
            save_grid(create_generator(name, variant, size=96).generate(range(24), seed=0), png, nrow=8)
        lines.append(f"![{name}/{variant}](img/{png.name})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-previews", action="store_true", help="do not re-render the preview PNGs")
    parser.add_argument("--n", type=int, default=64, help="images per statistics row (default 64)")
    args = parser.parse_args()
    names = GENERATORS.names()
    parts = ["# Generator families", "",
             "Every family is one file in `synthsight/generators/`, registered by name. Image i of a stream is a pure "
             "function of (family, options, seed, i). Options: `family/variant:key=value,...` anywhere a family is "
             "named, or `generate --option key=value`. Preview grids: 24 images at 96 px, seed 0. This page is "
             "written by `python scripts/generators_doc.py`; speeds: docs/BENCHMARKS.md.", ""]
    parts += [family_section(name, not args.no_previews) for name in names]
    reference = compare_with_reference(n=args.n, size=128, seed=0)
    parts += ["## Beside the reference code (`synthsight stats --reference`)", "",
              f"{args.n} images per family at 128 px, seed 0, against the figures measured on each family's reference "
              "code (shared/REFERENCE.md section 7: power-spectrum slope of the grey image over f = 2..56 cycles, its "
              "spread over images, per-channel std, chroma = per-pixel std across R, G, B, mean); cells are "
              "ours / reference, `!` outside tolerance.", "",
              f"Command: `synthsight stats --reference --n {args.n}`", "", reference_table(reference), ""]
    specs = [f"{name}/{v}" for name in names for v in GENERATORS.get(name).variants]
    natural = compare_with_natural(specs, n=args.n, size=128, seed=0)
    parts += ["## Beside natural photographs (`synthsight stats`)", "",
              f"{args.n} images per set at 128 px, seed 0, beside {args.n} crops of scikit-image's bundled photographs. "
              "Spectrum slope: alpha of power ~ 1/f^alpha over f = 2..32 (natural images ~2); structure diversity: "
              "effective rank of 16x16 grey thumbnails / its maximum; colour diversity: mean pairwise cosine distance "
              "of 8x8x8 colour histograms.", "",
              f"Command: `synthsight stats --family {','.join(specs)} --n {args.n} --size 128`", "",
              stats_table(natural), ""]
    (ROOT / "docs" / "GENERATORS.md").write_text("\n".join(parts))
    print(f"wrote {ROOT / 'docs' / 'GENERATORS.md'}")


if __name__ == "__main__":
    main()

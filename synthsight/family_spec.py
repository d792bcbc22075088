"""A family entry with its options, as written in configs, overrides and on the command line.

Three spellings name the same thing:

- a string: ``family[/variant][:key=value[,key=value...]]``, e.g. ``fractal_ifs/fractaldb:num_classes=100``
  (options after the first ``:``, separated by ``,`` or ``:``; values are read as YAML scalars);
- a mapping: ``{name: fractal_ifs/fractaldb, num_classes: 100}`` (YAML presets);
- a `FamilySpec` (Python).

Example:
    >>> parse_family_spec("contours/rcdb:num_classes=50")
    FamilySpec(family='contours', variant='rcdb', options={'num_classes': 50})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class FamilySpec:
    family: str
    variant: str | None = None  # None = the family's first (default) variant
    options: dict[str, Any] = field(default_factory=dict)  # constructor options of the generator

    @property
    def label(self) -> str:
        """The string spelling, e.g. 'fractal_ifs/fractaldb:num_classes=100'."""
        name = f"{self.family}/{self.variant}" if self.variant else self.family
        if not self.options:
            return name
        return name + ":" + ",".join(f"{k}={_scalar_text(v)}" for k, v in self.options.items())


def _scalar_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def _split_name(name: str) -> tuple[str, str | None]:
    family, _, variant = name.strip().partition("/")
    if not family:
        raise ValueError(f"family entry {name!r} has no family name; write family[/variant], e.g. dead_leaves/mixed")
    return family, variant or None


def parse_options(text: str, where: str) -> dict[str, Any]:
    """'num_classes=100,points=1000' (or ':'-separated) -> {'num_classes': 100, 'points': 1000}."""
    options: dict[str, Any] = {}
    for item in text.replace(":", ",").split(","):
        if not item.strip():
            continue
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where}: option {item!r} must look like key=value, e.g. num_classes=100")
        options[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return options


def parse_family_spec(spec: str | dict[str, Any] | FamilySpec, where: str = "family") -> FamilySpec:
    """Any of the three spellings -> FamilySpec; a malformed entry names itself and the fix."""
    if isinstance(spec, FamilySpec):
        return spec
    if isinstance(spec, dict):
        values = dict(spec)
        name = values.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"{where} = {spec!r}: a mapping entry needs name: family[/variant], e.g. "
                             "{name: fractal_ifs/fractaldb, num_classes: 100}")
        family, variant = _split_name(name)
        return FamilySpec(family, variant, values)
    if not isinstance(spec, str):
        raise ValueError(f"{where} = {spec!r}: expected 'family[/variant][:key=value,...]' or a mapping with name:")
    name, _, option_text = spec.partition(":")
    family, variant = _split_name(name)
    return FamilySpec(family, variant, parse_options(option_text, where))


def families_label(families: list[str | dict[str, Any] | FamilySpec], sep: str = ", ") -> str:
    """A stream's families in their string spellings, e.g. 'dead_leaves/mixed, mix/mixup:families=[programs],k=6'
    (config entries may be strings or mappings)."""
    return sep.join(parse_family_spec(f).label for f in families)


def join_split_options(items: list[Any]) -> list[Any]:
    """Undo a comma split inside one entry's options: ['a:k=1', 'j=2', 'b'] -> ['a:k=1,j=2', 'b'] (a command-line
    list such as data.families=a:k=1,j=2,b is split at every comma before it reaches here)."""
    out: list[Any] = []
    for item in items:
        is_option = isinstance(item, str) and "=" in item and ":" not in item.split("=", 1)[0]
        if is_option and out and isinstance(out[-1], str) and ":" in out[-1]:
            out[-1] = f"{out[-1]},{item}"
        else:
            out.append(item)
    return out

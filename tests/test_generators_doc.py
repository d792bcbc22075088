"""docs/GENERATORS.md lists every family's variants and options as the code has them (scripts/generators_doc.py)."""

import re
from pathlib import Path

import pytest

from synthsight.generators import GENERATORS, generator_options

DOC = Path(__file__).resolve().parents[1] / "docs" / "GENERATORS.md"


@pytest.mark.parametrize("name", GENERATORS.names())
def test_every_family_section_matches_the_code(name):
    text = DOC.read_text()
    cls = GENERATORS.get(name)
    match = re.search(rf"^## `{name}` \(version (\S+)\)\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, f"docs/GENERATORS.md has no section for {name}; run python scripts/generators_doc.py"
    assert match.group(1) == cls.version, "family version changed; run python scripts/generators_doc.py"
    section = match.group(2)
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert documented == list(generator_options(name)), "options changed; run python scripts/generators_doc.py"
    for variant in cls.variants:
        assert f"img/{name}_{variant}.png" in section
        assert (DOC.parent / "img" / f"{name}_{variant}.png").is_file()

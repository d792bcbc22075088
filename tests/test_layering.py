"""The package's layers point one way: generation, augmentation, models, losses, methods and evaluation (and the
checkpoint, schedule and process-group modules they share) never import the training loop or anything built on
it. Read from the source with `ast`, so imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "synthsight"
LOWER = ["augment", "eval", "generators", "losses", "methods", "models",
         "checkpoint.py", "distributed.py", "schedules.py"]  # fmt: skip
# the training package and everything that imports it: the commands, the export, the study runner, run folders
UPPER = ["synthsight.train", "synthsight.export", "synthsight.cli", "synthsight.runs", "synthsight.study",
         "synthsight.provenance", "synthsight.api"]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` imports (module code of `package`), relative imports resolved; `from a import b`
    counts as a and a.b."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def lower_modules() -> list[Path]:
    files = []
    for name in LOWER:
        target = PACKAGE / name
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return files


def upward_imports(path: Path) -> list[str]:
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    imported = imported_modules(path.read_text(), package)
    return sorted(m for m in imported if any(m == u or m.startswith(u + ".") for u in UPPER))


@pytest.mark.parametrize("path", lower_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_never_import_training_or_commands(path: Path) -> None:
    assert path.is_file()
    bad = upward_imports(path)
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}; move what it needs below train/"


def test_the_import_reader_sees_every_form() -> None:
    """Absolute, from-package, relative and function-local imports are all seen."""
    assert "synthsight.train" in imported_modules("def f():\n    from synthsight import train\n", "synthsight.eval")
    assert "synthsight.train.loop" in imported_modules("from ..train.loop import pretrain\n", "synthsight.eval")
    assert "synthsight.train" in imported_modules("from .. import train\n", "synthsight.eval")
    assert "synthsight.export.exporter" in imported_modules("import synthsight.export.exporter as e\n", "synthsight")
    assert "synthsight.eval.data" in imported_modules("from .data import load_dataset\n", "synthsight.eval")

"""Where commands write: a check of an --out path, folders replaced only once complete, write errors in one line.

`export` and `eval` assemble their folder under a temporary sibling name and swap it in only when everything is
written, so a failure leaves the previous folder exactly as it was, and a new result never sits beside the files of
an earlier one (a report cannot show another evaluation's figures). A folder that holds something else is replaced
only when asked (--overwrite), and never one that holds the checkpoint being read, a run, the working directory or
the home directory.

Example:
    >>> check_out_path(Path("exports/demo"))                      # ValueError if a file, or not writable
    >>> with staged_folder(Path("exports/demo")) as tmp:
    ...     (tmp / "model.safetensors").write_bytes(...)          # exports/demo appears (or is replaced) at the end
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator


def check_out_path(path: Path, flag: str = "--out") -> None:
    """ValueError (one line) when `path` is an existing file, or it (or, when it does not exist yet, its nearest
    existing parent) is not a folder this process can write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file, not a folder; choose a folder path")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, so no folder can be created there; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is read-only (no permission to write there); choose a folder "
                         "you can write to")


def contains(folder: Path, path: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (after resolving links)."""
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return path == folder or folder in path.parents


def check_replaceable(out: Path, keep: list[Path]) -> None:
    """ValueError when replacing `out` would delete one of `keep` (the checkpoint read, data folders), a run folder,
    the working directory or the home directory."""
    out = Path(out)
    if (out / "config.json").is_file() and (out / "checkpoints").is_dir():
        raise ValueError(f"{out} is a run folder (config.json, checkpoints/); it is never replaced: choose another "
                         "--out, e.g. a sub-folder of it")
    for path in [*keep, Path.cwd(), Path.home()]:
        if contains(out, path):
            raise ValueError(f"{out} holds {path}, which replacing it would delete; choose another --out")


def is_empty(folder: Path) -> bool:
    return not Path(folder).exists() or not any(Path(folder).iterdir())


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out`; when the block ends without error it becomes `out` (an earlier
    `out` is moved aside and then deleted), otherwise it is deleted and `out` is left untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def os_error_message(err: OSError, resume_hint: bool = False) -> str:
    """One line for a failed read or write: a full disk, a permission problem, or the system's own wording."""
    where = f" {err.filename}" if err.filename else ""
    then = ", then continue with --resume (the last checkpoint is kept)" if resume_hint else ", then run it again"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: could not write{where} ({err.strerror}); free some space{then}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write{where} ({err.strerror}); choose a folder you can write to{then}"
    return f"{err.strerror or err}:{where}" if err.strerror else str(err)

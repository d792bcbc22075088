"""One writer per run folder: an exclusive lock held from the start of `pretrain` (fresh or --resume) to its end.

The lock is RUN/.lock, locked with flock(2): the operating system releases it when the holding process ends, however
it ends (a crash, SIGKILL, a lost node), so a lock left behind by a dead run never blocks the next one. The file holds
the holder's pid, host, start time and command line, which the refusal names; it is removed on a normal exit (and so
are the folders the lock created, when the run stopped before writing anything into them). Where
flock is not available (Windows, some network file systems), the pid and host alone decide: a lock whose process is
gone from this host is stale and taken over; one from another host is refused with the file to delete.

Within one process the lock is re-entrant: `runs.pretrain_run` holds it around `pretrain`, which takes it again.

Example:
    >>> with run_lock(Path("runs/demo")):
    ...     ...                            # a second process gets RunLockedError here until the block ends
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"
_HELD: dict[str, list] = {}  # resolved run folder -> [file descriptor or None, depth]


class RunLockedError(ValueError):
    """Another process is writing into the run folder."""


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    return (f"another synthsight process (pid {info.get('pid')} on host {info.get('host')}, started "
            f"{info.get('started')}: {info.get('command')})")


def _refusal(run_dir: Path, info: dict, extra: str = "") -> RunLockedError:
    return RunLockedError(
        f"{run_dir} is in use by {_describe(info)}; two writers would mix their runs in one folder. Wait for it to "
        f"finish (or stop it), or choose another --out{extra}"
    )


def _alive_here(info: dict) -> bool:
    """Whether the recorded holder still runs; True when that cannot be told (another host)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _lock_fd(path: Path, run_dir: Path) -> int:
    """Open and lock path; returns the descriptor or raises RunLockedError."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "flock is not available")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _holder(fd)
            os.close(fd)
            raise _refusal(run_dir, info) from None
        except OSError:  # no flock here: decide by the recorded pid and host
            info = _holder(fd)
            if info and _alive_here(info) and info.get("pid") != os.getpid():
                os.close(fd)
                raise _refusal(run_dir, info, f" (if it is gone, delete {path})") from None
            return fd
        try:  # a holder that was just releasing may have removed the file we opened: lock the new one instead
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock for the block (creating the folder); RunLockedError if another process holds it."""
    run_dir = Path(run_dir)
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # deepest first
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:  # re-entrant within this process
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    path = run_dir / LOCK_FILE
    try:
        fd = _lock_fd(path, run_dir)
    except BaseException:
        _remove_empty(created)
        raise
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiting process then locks a fresh file (see _lock_fd)
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that are still empty: a refused run leaves no empty run folder behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return

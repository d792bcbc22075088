"""One registry type for everything users choose by name (generators, methods, backbones).

Example:
    >>> GENERATORS = Registry("generator")
    >>> @GENERATORS.register("dead_leaves")
    ... class DeadLeaves: ...
    >>> GENERATORS.get("dead_leaves")
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not registered; the message lists the valid names and the closest match."""


class Registry:
    """Maps names to classes or factories; `create(name, **kwargs)` builds one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        _load_plugins()
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names()))
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        _load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        _load_plugins()
        return name in self._entries


def _load_plugins() -> None:
    from synthsight.plugins import load_plugins  # entry points of other packages register their names here

    load_plugins()


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    """'unknown generator 'dead_leave'; did you mean 'dead_leaves'? valid: ...'."""
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Valid {kind}s: {', '.join(valid)}"


GENERATORS = Registry("generator")
METHODS = Registry("method")
BACKBONES = Registry("backbone")

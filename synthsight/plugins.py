"""Generators, methods and backbones from other packages, through the `synthsight.plugins` entry-point group.

A package registers its own names by declaring, in its pyproject.toml:

    [project.entry-points."synthsight.plugins"]
    my_families = "my_package.families"          # a module whose import registers names, or
    my_methods = "my_package.methods:register"   # a function called once with no arguments

Plugins load once, the first time any registry is asked for a name, so the CLI, `verify` and Python code all see
them. A plugin that fails to load stops with a message naming it and its package.
"""

from __future__ import annotations

import types
from importlib.metadata import entry_points

GROUP = "synthsight.plugins"
_state = {"loaded": False}


class PluginError(RuntimeError):
    """An installed plugin could not be loaded."""


def load_plugins() -> list[str]:
    """Load every entry point of the group (once per process); returns the names loaded by this call."""
    if _state["loaded"]:
        return []
    _state["loaded"] = True  # before loading: a plugin that asks a registry for a name must not recurse
    loaded = []
    for ep in entry_points(group=GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, (types.ModuleType, type)):
                obj()
        except Exception as err:  # any failure of foreign code becomes one clear message
            package = ep.dist.name if ep.dist is not None else "its package"
            raise PluginError(f"synthsight plugin {ep.name!r} ({ep.value}, from {package}) failed to load: "
                              f"{type(err).__name__}: {err}. Fix or uninstall {package}.") from err
        loaded.append(ep.name)
    return loaded

"""Where this OS's compiled core lives in the Maya module.

A development build and a wheel put ``_core`` next to this file. The module zip made
by ``scripts/package`` serves Linux, Windows and macOS from one copy of the package:
each OS's binary sits in ``<module>/platforms/<os>/`` (``linux``, ``win64``, ``mac``,
Maya's platform names), and :func:`core_path` adds that folder to the package's
``__path__`` so ``import subsession._core`` finds the right one.
"""

from __future__ import annotations

import os
import sys

_BINARY_SUFFIXES = (".so", ".pyd", ".dylib")


def maya_platform(platform: str = sys.platform) -> str:
    """Maya's name for this OS: ``linux``, ``win64`` or ``mac``."""
    if platform.startswith("win"):
        return "win64"
    if platform == "darwin":
        return "mac"
    return "linux"


def core_path(path: list[str]) -> list[str]:
    """``path`` (the package's ``__path__``) plus the module's folder for this OS's core.

    Unchanged when a ``_core`` binary sits in the package folder itself, or when the
    module has no ``platforms/<os>`` folder.
    """
    here = path[0] if path else os.path.dirname(os.path.abspath(__file__))
    try:
        names = os.listdir(here)
    except OSError:
        return path
    if any(n.startswith("_core") and n.endswith(_BINARY_SUFFIXES) for n in names):
        return path
    module_root = os.path.dirname(os.path.dirname(os.path.abspath(here)))
    folder = os.path.join(module_root, "platforms", maya_platform())
    if os.path.isdir(folder) and folder not in path:
        return [*path, folder]
    return path


def _extend_package_path() -> None:
    """Run on import by ``subsession/__init__.py``, before it imports ``_core``."""
    package = sys.modules.get(__package__ or "subsession")
    path = getattr(package, "__path__", None)
    if isinstance(path, list):
        path[:] = core_path(path)


_extend_package_path()

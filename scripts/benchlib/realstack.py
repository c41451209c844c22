"""The real package stack of measurement (k): a tool start-up of >= 1,500 modules.

sympy, pandas (numpy, dateutil, pytz), networkx and scipy.stats: pure-Python and
compiled packages, ~1,650 modules of their own when imported together. Installed once
with the test packages' cache and download logic (``tests/python/realpkgs.py``:
``pip install --target`` into ``$SUBSESSION_TEST_CACHE`` or
``~/.cache/subsession-test-packages``, outside the repository; pip compiles the ``.pyc``
files as it installs, so imports read cached bytecode as users' do).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

import realpkgs  # type: ignore[import-not-found]  # noqa: E402

IMPORTS = ("sympy", "pandas", "networkx", "scipy.stats")

_COMMON = (
    "sympy==1.13.3",
    "mpmath==1.3.0",
    "pandas==2.2.3",
    "python-dateutil==2.9.0.post0",
    "pytz==2024.2",
    "tzdata==2024.2",
    "six==1.17.0",
)
# Binary wheels exist for these pins from CPython 3.10 on (3.9: the older pins).
_NEW = ("numpy==2.1.3", "scipy==1.14.1", "networkx==3.4.2")
_OLD = ("numpy==2.0.2", "scipy==1.13.1", "networkx==3.2.1")


def key() -> str:
    return "bench-stack-1" if sys.version_info >= (3, 10) else "bench-stack-1-py39"


def ensure() -> Path:
    """The install folder of the stack, installing it on first use (raises
    ``realpkgs.FetchError`` saying how to fix it when pip cannot fetch)."""
    realpkgs.INSTALLS.setdefault(key(), _COMMON + (_NEW if sys.version_info >= (3, 10) else _OLD))
    return Path(realpkgs.ensure(key()))

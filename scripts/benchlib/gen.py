"""Generate the benchmark's Python packages into a directory.

Every generated module looks like ordinary tool code: a few stdlib imports, optionally a
host module (shared through ``keep_global``) and a sibling, constants, functions, a class.
A package of ``n`` modules is a top package, sub-packages of up to ``PER_SUB`` leaf
modules each, and the leaves; sub-packages import their leaves with absolute imports.
"""

from __future__ import annotations

import compileall
from pathlib import Path
from typing import Any, Optional

PER_SUB = 20
HOST_PACKAGES = 9  # like Maya's host list; ~1,050 modules each, enough for 10k in sys.modules
GLOBAL_PACKAGES = 8  # 8 x 100 isolatable modules loaded globally
HOST_SUBS_USED = 5  # bhost0.s0 .. s4: imported first by every worker
LEAF = "leaf"  # the module of the reload package that no other module imports
EDITS = "# -- bench edits below --\n"  # the reload benchmarks rewrite what follows

MODULE = '''"""{name}: generated benchmark module."""
import json
import os
from collections import OrderedDict
{extra}
VALUE = {i}
TABLE = {{"k{i}": {i}, "sep": os.sep, "names": ["a", "b", "c"]}}


def compute(x, y={i}):
    return x * y + VALUE


def describe(obj):
    return json.dumps(OrderedDict(name=type(obj).__name__, value=VALUE))


class Thing{i}:
    """A generated class."""

    scale = {i}

    def __init__(self, v=0):
        self.v = v

    def dump(self):
        return json.dumps(OrderedDict(v=self.v, s=self.scale))

    def grow(self, n):
        return [compute(self.v, k) for k in range(n)]
'''


TINY = '"""{name}: generated filler module."""\nVALUE = {i}\n\n\ndef f(x):\n    return x + VALUE\n'


def module_source(name: str, i: int, host: Optional[str] = None, sibling: str = "") -> str:
    """The text of one generated module; ``host``/``sibling`` add those imports."""
    extra = ""
    if host:
        extra += f"from {host.rpartition('.')[0]} import {host.rpartition('.')[2]} as _host\n"
    if sibling:
        extra += f"from {sibling.rpartition('.')[0]} import {sibling.rpartition('.')[2]} as _sib\n"
    return MODULE.format(name=name, i=i, extra=extra)


def host_module(i: int) -> str:
    """A host module isolatable modules import: the first host sub-packages, always loaded."""
    return f"bhost0.s{i % HOST_SUBS_USED}.m{i % PER_SUB}"


def write_package(
    root: Path, name: str, n: int, *, eager: bool = True, tiny: bool = False
) -> list[str]:
    """Write package ``name`` of ``n`` modules under ``root``; returns its sub-packages.

    ``eager``: the top ``__init__`` imports every sub-package (importing ``name`` loads all
    ``n`` modules); else the caller imports sub-packages one by one. ``tiny``: filler
    modules (host packages, stale-check files) whose content does not matter.
    """
    subs = -(-(n - 1) // (PER_SUB + 1))
    leaves = n - 1 - subs
    top = root / name
    top.mkdir(parents=True, exist_ok=True)
    names = [f"s{j}" for j in range(subs)]
    head = f'"""{name}: generated benchmark package."""\n'
    imports = f"from . import {', '.join(names)}\n" if eager else ""
    (top / "__init__.py").write_text(head + imports)
    for j, sub in enumerate(names):
        count = leaves // subs + (1 if j < leaves % subs else 0)
        pkg = f"{name}.{sub}"
        (top / sub).mkdir(exist_ok=True)
        mods = [f"m{k}" for k in range(count)]
        init = f'"""{pkg}"""\nfrom {pkg} import {", ".join(mods)}\n' if mods else ""
        (top / sub / "__init__.py").write_text(init)
        for k, mod in enumerate(mods):
            i = j * PER_SUB + k
            if tiny:
                source = TINY.format(name=f"{pkg}.{mod}", i=i)
            else:
                sibling = f"{pkg}.m{k - 1}" if k else ""
                source = module_source(f"{pkg}.{mod}", i, host_module(i), sibling)
            (top / sub / f"{mod}.py").write_text(source)
    return [f"{name}.{sub}" for sub in names]


def write_flat(root: Path, name: str, i: int, extra: str = "") -> Path:
    """Write the single module ``root/name.py`` (importing a host module) plus ``extra``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.py"
    path.write_text(module_source(name, i, host_module(i)) + extra)
    return path


def lazy_caller(prefix: str, count: int) -> str:
    """A module of functions ``lazy_<k>()`` whose body imports ``<prefix><k>`` lazily."""
    body = "def lazy_{k}():\n    import {m}{k}\n    return {m}{k}\n"
    return "\n\n".join(body.format(k=k, m=prefix) for k in range(count))


DEEP = '''"""bdeep: the module deep reload updates in place."""
import json

GENERATION = 0


def helper(x):
    return x + 1


class Widget:
    """A class with many live instances (an open tool window's widgets)."""

    size = 3

    def __init__(self, i):
        self.i = i
        self.label = "w%d" % i

    def click(self):
        return helper(self.i) * self.size

    def state(self):
        return json.dumps({"i": self.i, "label": self.label})
'''


def generate(root: Path, *, imp_copies: int, lazy_count: int) -> dict[str, Any]:
    """Write everything the measurements need; returns the layout the workers read."""
    hosts = [f"bhost{k}" for k in range(HOST_PACKAGES)]
    host_subs = []
    for h in hosts:
        host_subs += write_package(root / "host", h, 1050, eager=False, tiny=True)
    globs = [f"bglob{k}" for k in range(GLOBAL_PACKAGES)]
    for g in globs:
        write_package(root / "glob", g, 100)
    write_package(root / "sess", "bsess", 200)
    imps = [f"bimp_{k:02d}" for k in range(imp_copies)]
    for name in imps:
        write_package(root / "imp", name, 200)
    for k in range(lazy_count):
        write_flat(root / "lazy_s", f"blazy_{k}", k)
        write_flat(root / "lazy_g", f"bplazy_{k}", k)
    (root / "lazy_s" / "bsessmod.py").write_text(lazy_caller("blazy_", lazy_count))
    (root / "lazy_g" / "bplainmod.py").write_text(lazy_caller("bplazy_", lazy_count))
    write_package(root / "stale", "bstale", 2000, tiny=True)
    for side in ("rel_s", "rel_g"):
        write_package(root / side, "brel", 199)
        write_flat(root / side / "brel", LEAF, 7, EDITS)
    (root / "deep").mkdir()
    (root / "deep" / "bdeep.py").write_text(DEEP + EDITS)
    for measured in ("glob", "sess", "imp", "lazy_s", "lazy_g", "rel_s", "rel_g", "deep"):
        compileall.compile_dir(str(root / measured), quiet=2)  # filler loads from source
    return {
        "root": str(root),
        "hosts": hosts,
        "host_subs": host_subs,
        "globs": globs,
        "imps": imps,
        "lazy_count": lazy_count,
        "host_subs_used": HOST_SUBS_USED,
        "leaf": LEAF,
        "edits": EDITS,
    }

"""A block shows the session's modules under real names lazily (docs/contract.md §4.3,
"Real names in a block"): what a user can rely on, with the host holding its own copy
of the same package, as Maya's start-up would.

- an import in the block (statement, ``__import__``, ``importlib.import_module``, a
  ``from`` import of a submodule) gives the session's module AND shows it, and its
  parents, in ``sys.modules`` under the real name until the block ends;
- code the stdlib runs in C on the block's behalf (``_pickle`` re-reading
  ``sys.modules`` after ``PyImport_Import``) sees the session's module;
- leaving restores the host's modules exactly, however many names the block showed;
- a session's modules are the same objects in every block, whether or not the block
  imports them.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from collections.abc import Callable
from typing import Any

from conftest import PkgFactory


def test_imports_in_a_block_show_the_sessions_modules_over_the_hosts(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("lazy")
    files = {"sub.py": "from . import VERSION\n"}
    host_root = pkgs.make(name, "1.0", files)
    sys.path.insert(0, str(host_root))
    try:
        host = importlib.import_module(name)
        host_sub = importlib.import_module(f"{name}.sub")
    finally:
        sys.path.remove(str(host_root))
    s = new_session(paths=[pkgs.make(name, "2.0", files)])
    with s:
        mod = importlib.import_module(f"{name}.sub")
        assert mod.VERSION == "2.0"
        assert sys.modules[f"{name}.sub"] is mod is s.modules[f"{name}.sub"]
        assert sys.modules[name] is s.modules[name]  # the parent too
    assert sys.modules[name] is host and sys.modules[f"{name}.sub"] is host_sub
    with s:
        __import__(name)
        assert sys.modules[name] is s.modules[name]
    assert sys.modules[name] is host
    with s:
        exec(f"from {name} import sub as imported", globals_ := {})
        assert globals_["imported"] is s.modules[f"{name}.sub"]
        assert sys.modules[f"{name}.sub"] is s.modules[f"{name}.sub"]
    assert sys.modules[f"{name}.sub"] is host_sub
    assert host.VERSION == "1.0" and host_sub.VERSION == "1.0"


def test_c_code_in_a_block_sees_what_the_block_resolves(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("lazypk")
    files = {
        "items.py": (
            "import enum\n\n\nclass Item:\n    def __init__(self, n):\n        self.n = n\n\n\n"
            "class Kind(enum.Enum):\n    A = 1\n"
        )
    }
    s = new_session(paths=[pkgs.make(name, "1.0", files)])
    with s:
        items = importlib.import_module(f"{name}.items")
        obj, kind = items.Item(3), items.Kind.A
    # A later block that never imports the package: the C pickler resolves the
    # classes by their qualified module names, and loads them back as the same class.
    with s:
        back = pickle.loads(pickle.dumps((obj, kind)))
    assert type(back[0]) is items.Item and back[0].n == 3 and back[1] is items.Kind.A


def test_leaving_restores_the_host_after_many_names(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("lazymany")
    files = {f"m{i}.py": f"X = {i}\n" for i in range(40)}
    s = new_session(paths=[pkgs.make(name, "1.0", files)])
    before = dict(sys.modules)
    for _ in range(3):
        with s:
            for i in range(40):
                assert importlib.import_module(f"{name}.m{i}").X == i
            assert all(sys.modules[f"{name}.m{i}"] is s.modules[f"{name}.m{i}"] for i in range(40))
        assert name not in sys.modules
        assert not [k for k in sys.modules if k.startswith(f"{name}.")]
    assert {k: v for k, v in sys.modules.items() if k in before} == {
        k: v for k, v in before.items() if k in sys.modules
    }
    with s:
        pass
    assert len(s.modules) == 41

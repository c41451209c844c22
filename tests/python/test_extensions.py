"""A session's own C extension modules (docs/contract.md §4.2, §4.4 "compiled extension").

Two versions of a package whose extension module is compiled here with the system C
compiler. Its single-phase definition names it with the full dotted name, as mypyc
does: CPython then keeps that name instead of the spec's, and the session must still
recognise the module as its own, alias it by real name in the very block that imported
it, and keep both versions apart.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

from conftest import SESSION_PREFIX, PkgFactory, compiler

C_SOURCE = """\
#include <Python.h>

static PyObject *version(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString("%(version)s");
}

static PyMethodDef methods[] = {
    {"version", version, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {
    PyModuleDef_HEAD_INIT, "%(package)s.native", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit_native(void) { return PyModule_Create(&def); }
"""


def build(pkgs: PkgFactory, package: str, version: str, tmp: Path) -> Path:
    root = pkgs.make(package, version, files={"__init__.py": "from . import native\n"})
    source = tmp / f"native-{version}.c"
    source.write_text(C_SOURCE % {"version": version, "package": package})
    target = root / package / f"native{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [compiler(), "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


def test_dotted_name_extension_is_the_sessions_from_the_first_block(
    pkgs: PkgFactory, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    package = pkgs.unique("cext")
    a = new_session(paths=[build(pkgs, package, "1.0", tmp_path)])
    b = new_session(paths=[build(pkgs, package, "2.0", tmp_path)])
    real = f"{package}.native"
    natives = {}
    for s, version in ((a, "1.0"), (b, "2.0")):
        with s:
            __import__(package)
            native = sys.modules[real]  # the real-name alias, in this very block
            assert native.version() == version
            assert native.__name__ == f"{s.prefix}.{real}"
            assert s.modules[real] is native
            natives[version] = native
    assert natives["1.0"] is not natives["2.0"]
    assert (natives["1.0"].version(), natives["2.0"].version()) == ("1.0", "2.0")
    assert real not in sys.modules
    assert not [k for k in sys.modules if k.startswith(package)]
    with a:
        # A block shows a module under its real name once the block imports it
        # (activation is lazy: its cost does not grow with the session).
        assert importlib.import_module(real) is natives["1.0"]
        assert sys.modules[real] is natives["1.0"]
    assert all(k.startswith(SESSION_PREFIX) for k in sys.modules if real in k)

"""Every C-API route a session's compiled code imports through resolves in its session,
whenever it runs (docs/contract.md §4.2), checked with a C extension of our own: one
package in three versions — the host's copy imported first, then two sessions' — whose
C functions import the package's ``cfg`` module by real name through each redirected
function, called from host code after the blocks.
"""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import subsession
from conftest import compiler

C_SOURCE = r"""
#include <Python.h>

static PyObject *version_of(PyObject *module) {
    if (module == NULL) return NULL;
    PyObject *v = PyObject_GetAttrString(module, "VERSION");
    Py_DECREF(module);
    return v;
}
static PyObject *via_import_module(PyObject *s, PyObject *u) {
    return version_of(PyImport_ImportModule("PKG.cfg"));
}
static PyObject *via_import(PyObject *s, PyObject *u) {
    PyObject *name = PyUnicode_FromString("PKG.cfg");
    PyObject *m = PyImport_Import(name);
    Py_DECREF(name);
    return version_of(m);
}
static PyObject *via_level(PyObject *s, PyObject *u) {
    PyObject *fromlist = Py_BuildValue("[s]", "VERSION");
    PyObject *m = PyImport_ImportModuleLevel("PKG.cfg", NULL, NULL, fromlist, 0);
    Py_DECREF(fromlist);
    return version_of(m);
}
static PyObject *via_get_module(PyObject *s, PyObject *u) {
    PyObject *name = PyUnicode_FromString("PKG.cfg");
    PyObject *m = PyImport_GetModule(name);
    Py_DECREF(name);
    if (m == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return version_of(m);
}
static PyObject *via_capsule(PyObject *s, PyObject *u) {
    const char *v = (const char *)PyCapsule_Import("PKG.native.CAPSULE", 0);
    return v == NULL ? NULL : PyUnicode_FromString(v);
}
static PyObject *state_put(PyObject *s, PyObject *value) {
    PyObject *d = PyThreadState_GetDict();
    if (d == NULL || PyDict_SetItemString(d, "subsession-test-state", value) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *state_get(PyObject *s, PyObject *u) {
    PyObject *d = PyThreadState_GetDict();
    PyObject *v = d == NULL ? NULL : PyDict_GetItemString(d, "subsession-test-state");
    if (v == NULL) Py_RETURN_NONE;
    Py_INCREF(v);
    return v;
}
static PyMethodDef methods[] = {
    {"via_import_module", via_import_module, METH_NOARGS, NULL},
    {"via_import", via_import, METH_NOARGS, NULL},
    {"via_level", via_level, METH_NOARGS, NULL},
    {"via_get_module", via_get_module, METH_NOARGS, NULL},
    {"via_capsule", via_capsule, METH_NOARGS, NULL},
    {"state_put", state_put, METH_O, NULL},
    {"state_get", state_get, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "native", NULL, -1, methods};
PyMODINIT_FUNC PyInit_native(void) {
    PyObject *m = PyModule_Create(&def);
    if (m == NULL) return NULL;
    PyObject *capsule = PyCapsule_New((void *)"VERSION_TEXT", "PKG.native.CAPSULE", NULL);
    if (capsule == NULL || PyModule_AddObject(m, "CAPSULE", capsule) < 0) return NULL;
    return m;
}
"""


def build(root: Path, package: str, version: str) -> Path:
    """``root/package`` with ``cfg.py`` (VERSION) and the compiled ``native``."""
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("from . import cfg, native\n")
    (folder / "cfg.py").write_text(f"VERSION = {version!r}\n")
    source = root / "native.c"
    source.write_text(C_SOURCE.replace("PKG", package).replace("VERSION_TEXT", version))
    target = folder / f"native{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    include = sysconfig.get_paths()["include"]
    cmd = [compiler(), "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return root


def run(code: str, **env: str) -> str:
    package_root = str(Path(subsession.__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=pythonpath, **env),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_every_route_resolves_in_the_libraries_session(tmp_path: Path) -> None:
    package = "capiroutes"
    roots = {v: build(tmp_path / f"v{v}", package, v) for v in ("0", "1", "2")}
    out = run(
        f"""
        import importlib, sys
        from subsession import Session
        pkg = {package!r}
        sys.path.insert(0, {str(roots["0"])!r})
        host = importlib.import_module(pkg + ".native")  # the host's copy, first
        sys.path.pop(0)
        a = Session(paths=[{str(roots["1"])!r}])
        b = Session(paths=[{str(roots["2"])!r}])
        with a:
            na = importlib.import_module(pkg + ".native")
        with b:
            nb = importlib.import_module(pkg + ".native")
        routes = ["via_import_module", "via_import", "via_level", "via_get_module",
                  "via_capsule"]
        # Host code, no block open: each library's C code imports in its own session.
        for native, want in ((na, "1"), (nb, "2"), (host, "0"), (na, "1")):
            got = [getattr(native, r)() for r in routes]
            assert got == [want] * len(routes), (want, got)
        with b:  # a block of another session changes nothing for a's code
            assert na.via_import_module() == "1" and nb.via_level() == "2"
        # Each session's compiled code has its own per-thread state dict.
        for native, value in ((na, "A"), (nb, "B"), (host, "H")):
            native.state_put(value)
        assert (na.state_get(), nb.state_get(), host.state_get()) == ("A", "B", "H")
        assert pkg + ".cfg" in sys.modules and sys.modules[pkg + ".cfg"].VERSION == "0"
        a.close()
        assert host.via_import_module() == "0" and nb.via_capsule() == "2"
        print("OK")
        """
    )
    assert "OK" in out


def test_sessions_beyond_the_slots_load_unpatched_with_a_warning(tmp_path: Path) -> None:
    package = "capislots"
    first = build(tmp_path / "v0", package, "0")
    out = run(
        f"""
        import importlib, logging, shutil, sys
        from subsession import Session
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("subsession").addHandler(handler)
        sessions = []
        for i in range(140):  # past the 128 slots, each with its own copy of the file
            root = {str(tmp_path)!r} + f"/copy{{i}}"
            shutil.copytree({str(first)!r}, root)
            s = Session(paths=[root])
            with s:
                native = importlib.import_module({package!r} + ".native")
            sessions.append((s, native))
        assert sessions[0][1].via_import_module() == "0"  # a redirected one still works
        text = [r.getMessage() for r in records if "sessions loaded compiled" in r.getMessage()]
        assert len(text) == 1, [r.getMessage() for r in records]  # once, not per library
        late = sessions[-1][1]
        try:
            late.via_import_module()  # unpatched: a real-name import, as outside sessions
        except ImportError:
            pass
        print(len(text), "OK")
        """
    )
    assert "OK" in out

"""Smoke test of the real subSession plug-in in Maya, for people who have Maya.

Run it with Maya's interpreter (it cannot run on this project's CI: no Maya there)::

    mayapy scripts/maya_smoke.py                  # the module in this checkout (maya/)
    mayapy scripts/maya_smoke.py --module DIR     # an installed module folder

Windows: ``"C:\\Program Files\\Autodesk\\Maya2025\\bin\\mayapy.exe" scripts\\maya_smoke.py``.
It starts ``maya.standalone``, loads ``plug-ins/subSession.py`` from the module folder,
creates two sessions holding two versions of a small library, runs code in each,
queries modules, reloads a changed module, closes both, checks that compiled code
(Maya's own numpy, in a session) is routed to its session on this OS, unloads the
plug-in, and prints PASS or FAIL per step. Exit status 0 when every step passed.

Three steps check what only a real Maya can answer and print a ``report back:`` line:
paste those lines (and any FAIL) into the issue you were asked to test:

- the ``subsession`` logger's set-up (one Script Editor handler, no propagation) and
  whether a warning prints once;
- that a record logged on another thread, and a reload-on-save, reach Maya on its
  main thread, never calling Maya's API from the thread;
- that API 1.0 (``maya.OpenMaya``) and ``maya.api._OpenMaya_py2`` callbacks made by
  session code are recorded and removed when the session closes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "VERSION = {version!r}\n\n\ndef version():\n    return VERSION\n"


class Smoke:
    """Runs the steps; each prints PASS or FAIL (with the reason)."""

    def __init__(self) -> None:
        self.failed = 0

    def step(self, title: str, check: Callable[[], Any]) -> Any:
        try:
            value = check()
        except Exception as error:  # report and go on: later steps say what still works
            self.failed += 1
            print(f"FAIL  {title}: {type(error).__name__}: {error}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return None
        print(f"PASS  {title}")
        return value


def expect(value: Any, expected: Any) -> Any:
    if value != expected:
        raise AssertionError(f"got {value!r}, expected {expected!r}")
    return value


def write_lib(root: str, version: str) -> str:
    folder = os.path.join(root, f"v{version}", "libsmoke")
    os.makedirs(folder)
    with open(os.path.join(folder, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write(LIB.format(version=version))
    return os.path.dirname(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module",
        default=os.path.join(os.path.dirname(HERE), "maya"),
        help="the subsession module folder (default: maya/ of this checkout)",
    )
    module = os.path.abspath(parser.parse_args().module)
    smoke = Smoke()
    temp = tempfile.mkdtemp(prefix="subsession-smoke-")

    def start() -> None:
        import maya.standalone

        maya.standalone.initialize(name="python")

    smoke.step("maya.standalone.initialize()", start)

    def import_package() -> None:
        try:
            import subsession  # noqa: F401
        except ImportError:  # not on MAYA_MODULE_PATH: use the module folder given
            sys.path.insert(0, os.path.join(module, "scripts"))
            import subsession  # noqa: F401
        print(f"      subsession {subsession.__version__} from {subsession.__file__}")

    smoke.step("import subsession", import_package)
    from maya import cmds, mel

    plugin = os.path.join(module, "plug-ins", "subSession.py")
    smoke.step("loadPlugin subSession.py", lambda: cmds.loadPlugin(plugin))
    v1, v2 = write_lib(temp, "1"), write_lib(temp, "2")
    smoke.step("create smokeA (lib 1)", lambda: cmds.subSession("smokeA", create=True, path=[v1]))
    smoke.step("create smokeB (lib 2)", lambda: cmds.subSession("smokeB", c=True, p=[v2]))

    def interleave() -> None:
        for _ in range(2):
            expect(cmds.subSession("smokeA", module="libsmoke", function="version"), "1")
            expect(cmds.subSession("smokeB", module="libsmoke", function="version"), "2")
        if "libsmoke" in sys.modules:
            raise AssertionError("a session's libsmoke leaked into sys.modules")

    smoke.step("module/function in each session, interleaved", interleave)

    def command() -> None:
        cmds.subSession("smokeA", command="import libsmoke\nseen = libsmoke.VERSION")
        import subsession

        expect(subsession.get("smokeA").namespace["seen"], "1")

    smoke.step("command runs inside smokeA", command)
    smoke.step(
        "query modules",
        lambda: expect(cmds.subSession("smokeB", query=True, modules=True), ["libsmoke"]),
    )

    def reload() -> None:
        path = os.path.join(v1, "libsmoke", "__init__.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(LIB.format(version="1.1"))
        later = time.time() + 10
        os.utime(path, (later, later))
        expect(cmds.subSession("smokeA", query=True, stale=True), ["libsmoke"])
        expect(cmds.subSession("smokeA", reload=True), ["libsmoke"])
        expect(cmds.subSession("smokeA", module="libsmoke", function="version"), "1.1")

    smoke.step("stale + reload", reload)
    smoke.step(
        "MEL: subSession -m libsmoke -fn version smokeB",
        lambda: expect(mel.eval('subSession -m "libsmoke" -fn "version" smokeB;'), "2"),
    )

    def bad_input() -> None:
        try:
            cmds.subSession("smokeA", environment=["NOEQUALS"], edit=True)
        except RuntimeError:
            return
        raise AssertionError("a malformed KEY=VALUE did not fail")

    smoke.step("bad input fails with an error", bad_input)

    def logging_once() -> None:
        import logging

        import maya.utils

        logger = logging.getLogger("subsession")
        editors = [h for h in logger.handlers if isinstance(h, maya.utils.MayaGuiLogHandler)]
        root = [type(h).__name__ for h in logging.getLogger().handlers]
        print(
            f"      report back: subsession logger level={logging.getLevelName(logger.level)}"
            f" propagate={logger.propagate} script-editor handlers={len(editors)};"
            f" root level={logging.getLevelName(logging.getLogger().level)} handlers={root}"
        )
        expect((len(editors), logger.propagate, logger.level), (1, False, logging.WARNING))
        logger.warning("smoke: this warning must print exactly once")
        logger.info("smoke: this INFO line must not print")
        print(
            "      report back: did 'smoke: this warning must print exactly once' print once "
            "above, and the INFO line not at all? In Maya's GUI (userSetup.py calling "
            "subsession.maya.setup()), run in the Script Editor: import logging; "
            "logging.getLogger('subsession').warning('once?') -- how many lines?"
        )

    smoke.step("subsession log records: one handler, no propagation", logging_once)

    def main_thread_delivery() -> None:
        import logging

        import maya.utils
        import subsession

        # Maya's handler must only ever run on the main thread: watch its emit.
        seen: list[str] = []
        base = maya.utils.MayaGuiLogHandler
        original = base.emit

        def emit(handler: Any, record: Any) -> None:
            seen.append(threading.current_thread().name)
            original(handler, record)

        base.emit = emit  # type: ignore[method-assign]
        try:
            worker = threading.Thread(
                target=logging.getLogger("subsession").warning,
                args=("smoke: logged on a worker thread",),
                name="smoke-worker",
            )
            worker.start()
            worker.join()
        finally:
            base.emit = original  # type: ignore[method-assign]
        if "smoke-worker" in seen:
            raise AssertionError("Maya's log handler ran on the worker thread")
        folder = os.path.join(temp, "watched")
        os.makedirs(folder)
        path = os.path.join(folder, "libthread.py")
        source = "import threading\nMAIN = threading.current_thread() is threading.main_thread()\n"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(source + "V = 1\n")
        watched = subsession.Session("smokeWatch", paths=[folder])
        try:
            module = watched.import_module("libthread")
            watched.watch(interval=0.05)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(source + "V = 2\n")
            later = time.time() + 10
            os.utime(path, (later, later))
            end = time.monotonic() + 10
            while module.V != 2 and time.monotonic() < end:
                subsession.process_pending()  # mayapy: no idle loop; the GUI uses it
                time.sleep(0.05)
            expect((module.V, module.MAIN), (2, True))
        finally:
            watched.close()
        print(
            "      report back: did 'smoke: logged on a worker thread' print (on stderr "
            "in mayapy), with no 'Logging error'? In Maya's GUI, a watched tool's failed "
            "reload must show one warning in the Script Editor and Maya must not freeze."
        )

    smoke.step("other threads reach Maya on its main thread", main_thread_delivery)

    def api1_callbacks() -> None:
        import subsession

        folder = os.path.join(temp, "callbacks")
        os.makedirs(folder)
        with open(os.path.join(folder, "libcb.py"), "w", encoding="utf-8") as handle:
            handle.write(
                "import maya.OpenMaya as om1\n"
                "from maya.api._OpenMaya_py2 import MEventMessage\n"
                "def on(*args):\n    pass\n"
                "API1 = om1.MSceneMessage.addCallback(om1.MSceneMessage.kBeforeSave, on)\n"
                "PY2 = MEventMessage.addEventCallback('SelectionChanged', on)\n"
            )
        owner = subsession.Session("smokeCallbacks", paths=[folder])
        module = owner.import_module("libcb")
        api1, py2 = module.API1, module.PY2
        del module
        removed = owner.close().removed
        print(f"      report back: API 1.0 id type {type(api1).__name__}; removed {removed}")
        if len(removed) != 2:
            raise AssertionError(f"expected 2 callbacks removed, got {removed}")
        import maya.OpenMaya as om1
        from maya.api import OpenMaya as om2

        for api, ident in ((om1, api1), (om2, py2)):
            try:
                api.MMessage.removeCallback(ident)
            except RuntimeError:
                continue  # already removed by close(): as expected
            raise AssertionError(f"callback {ident!r} was still registered after close()")

    smoke.step("API 1.0 and _OpenMaya_py2 callbacks are removed with the session", api1_callbacks)

    def close() -> None:
        for name in ("smokeA", "smokeB"):
            alive = cmds.subSession(name, close=True)
            if alive:
                raise AssertionError(f"{name}: modules still alive after close: {alive}")
            expect(cmds.subSession(name, query=True, exists=True), False)

    smoke.step("close both (no module left alive)", close)

    def import_tables() -> None:
        from subsession import _core

        found = {symbol for symbol, _, _ in _core._import_slots(_core.__file__)}
        if "PyImport_Import" not in found:
            raise AssertionError(f"this OS's reader found no PyImport_Import slot: {found}")

    smoke.step("this OS's import-table reader reads the core itself", import_tables)

    def compiled_after_the_block() -> None:
        # Maya ships numpy: a session's own copy of it (fresh, its C-API calls pointed
        # at the session) must work from host code after the block.
        import importlib.util

        if "numpy" in sys.modules or importlib.util.find_spec("numpy") is None:
            print("      (skipped: numpy is not installed, or already imported and so shared)")
            return
        import subsession

        numeric = subsession.Session("smokeNumpy")
        with numeric:
            import numpy

            values = numpy.arange(10)
        expect(float(values.mean()), 4.5)  # numpy's C code imports numpy._core lazily
        expect(repr(values), "array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])")
        libraries, slots, _ = subsession._core._redirect_stats()
        if not libraries:
            raise AssertionError("no compiled library had its C-API calls redirected")
        print(f"      {libraries} libraries, {slots} C-API slots pointed at their session")
        if "numpy" in sys.modules:
            raise AssertionError("the session's numpy leaked into sys.modules")
        numeric.close()

    smoke.step("a session's numpy works from host code after the block", compiled_after_the_block)

    def unload() -> None:
        cmds.unloadPlugin("subSession")
        if hasattr(cmds, "subSession"):
            raise AssertionError("subSession is still a command after unloadPlugin")

    smoke.step("unloadPlugin removes the command", unload)

    def stop() -> None:
        import maya.standalone

        maya.standalone.uninitialize()

    smoke.step("maya.standalone.uninitialize()", stop)
    print("smoke:", "FAILED" if smoke.failed else "all steps passed")
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main())

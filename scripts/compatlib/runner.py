"""Runs one package's own test suite with pytest, plainly or inside a session.

    python runner.py --mode plain|session --site DIR --junit OUT.xml
                     [--compiled SPEC.json] -- PYTEST_ARGS...

Started by ``scripts/compat`` in a fresh interpreter per run, with the extracted sdist
as the working folder. ``--site`` holds the package under test and its test
dependencies (``pip install --target``). Plainly it goes first on ``sys.path``; in
session mode it is the session's path, and pytest itself, its plugins, the package and
its tests are all imported inside the session (pytest is a session module too).

``--compiled`` (``scripts/compat --compiled``) names a JSON file with the compiled
extension the suite must exercise. In session mode the host first imports another
version of the package from ``host_site`` (it is in ``sys.modules`` before the session
imports its own), and the runner checks that the session's extension is its own copy
(qualified name, file in ``--site``) and that the host's copy still works after the
suite and after ``session.close()``. Results go to the file's ``out`` path as JSON.
Exits with pytest's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from typing import Any


def inside(module: types.ModuleType, folder: str) -> bool:
    path = os.path.realpath(getattr(module, "__file__", None) or "")
    return path.startswith(os.path.realpath(folder) + os.sep)


class Checks:
    """The compiled mode's assertions, collected rather than raised."""

    def __init__(self, spec: dict[str, Any], site: str) -> None:
        self.spec, self.site = spec, site
        self.failed: list[str] = []
        self.passed: list[str] = []

    def check(self, ok: object, what: str) -> None:
        (self.passed if ok else self.failed).append(what)

    def extension(self, modules: Any, name: str, folder: str) -> None:
        """``modules``: real name -> module (sys.modules, or the session's modules)."""
        ext = self.spec["extension"]
        module, top = modules.get(ext), modules.get(ext.split(".")[0])
        self.check(
            module is not None and module.__name__ == name and inside(module, folder),
            f"{name} is the compiled copy in {folder} "
            f"(found {getattr(module, '__name__', None)} at {getattr(module, '__file__', None)})",
        )
        flag = self.spec.get("flag")
        if flag:
            self.check(getattr(top, flag, False) is True, f"{flag} is True beside {name}")

    def tests_use(self, session: Any) -> None:
        """The test modules' globals hold the session's copy of the package, never the host's.

        By identity: a compiled class's ``__module__`` is a literal baked into its C code.
        """
        top = self.spec["extension"].split(".")[0]

        def objects(modules: Any) -> dict[int, object]:
            found: dict[int, object] = {}
            for real, module in list(modules.items()):
                if real == top or real.startswith(top + "."):
                    found[id(module)] = module
                    found.update((id(v), v) for v in vars(module).values() if callable(v))
            return found

        own, host = objects(session.modules), objects(sys.modules)
        tests, used, wrong = 0, 0, []
        for real, module in dict(session.modules).items():
            if not real.rsplit(".", 1)[-1].startswith(("test", "conftest")):
                continue
            tests += 1
            for key, value in list(vars(module).items()):
                if id(value) in own and own[id(value)] is value:
                    used += 1
                elif id(value) in host and host[id(value)] is value:
                    wrong.append(f"{real}.{key}")
        self.check(
            used and not wrong,
            f"{tests} test modules hold {used} objects of the session's {top} "
            f"and {len(wrong)} of the host's {wrong[:3]}",
        )

    def host_works(self, when: str) -> None:
        ext = self.spec["extension"]
        self.extension(sys.modules, ext, self.spec["host_site"])
        top, host = sys.modules.get(ext.split(".")[0]), sys.modules.get(ext)
        try:
            exec(self.spec["probe"], {"m": top, "ext": host})  # noqa: S102 - our own probe
            self.check(True, f"the host's {ext} works {when}")
        except Exception as e:  # noqa: BLE001 - reported
            self.check(False, f"the host's {ext} works {when}: {type(e).__name__}: {e}")

    def write(self) -> None:
        with open(self.spec["out"], "w", encoding="utf-8") as f:
            json.dump({"passed": self.passed, "failed": self.failed}, f, indent=1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("plain", "session"), required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--junit", required=True)
    parser.add_argument("--compiled", help="JSON spec of the compiled mode (scripts/compat)")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    pytest_args = [f"--junitxml={args.junit}", *args.pytest_args]
    checks = None
    if args.compiled:
        with open(args.compiled, encoding="utf-8") as f:
            checks = Checks(json.load(f), args.site)
    if args.mode == "plain":
        sys.path.insert(0, args.site)
        import pytest

        code = int(pytest.main(pytest_args))
        if checks:
            ext = checks.spec["extension"]
            checks.extension(sys.modules, ext, args.site)
            checks.write()
        return code

    import subsession

    if checks:
        # The host's own copy (another version) is imported first, then its folder
        # leaves sys.path: only sys.modules holds it while the session runs.
        host_site = checks.spec["host_site"]
        sys.path.insert(0, host_site)
        __import__(checks.spec["extension"])
        sys.path.remove(host_site)
        checks.host_works("before the session")
    session = subsession.Session("compat", paths=[args.site])
    with session:
        pytest = session.import_module("pytest")
        if not pytest.__name__.startswith(session.prefix):
            print("compat: pytest is not a session module", file=sys.stderr)
            return 3
        code = int(pytest.main(pytest_args))
    if checks:
        ext = checks.spec["extension"]
        checks.extension(session.modules, f"{session.prefix}.{ext}", args.site)
        checks.tests_use(session)
        checks.host_works("after the suite")
        session.close()
        checks.host_works("after session.close()")
        checks.write()
    return code


if __name__ == "__main__":
    sys.exit(main())

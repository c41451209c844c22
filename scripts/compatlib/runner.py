"""Runs one package's own test suite with pytest, plainly or inside a session.

    python runner.py --mode plain|session --site DIR --junit OUT.xml -- PYTEST_ARGS...

Started by ``scripts/compat`` in a fresh interpreter per run, with the extracted sdist
as the working folder. ``--site`` holds the package under test and its test
dependencies (``pip install --target``). Plainly it goes first on ``sys.path``; in
session mode it is the session's path, and pytest itself, its plugins, the package and
its tests are all imported inside the session (pytest is a session module too).
Exits with pytest's exit code.
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("plain", "session"), required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--junit", required=True)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    pytest_args = [f"--junitxml={args.junit}", *args.pytest_args]
    if args.mode == "plain":
        sys.path.insert(0, args.site)
        import pytest

        return int(pytest.main(pytest_args))

    import subsession

    session = subsession.Session("compat", paths=[args.site])
    with session:
        pytest = session.import_module("pytest")
        if not pytest.__name__.startswith(session.prefix):
            print("compat: pytest is not a session module", file=sys.stderr)
            return 3
        return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())

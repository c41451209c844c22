"""Real PyPI packages in two versions each, installed once into a cache OUTSIDE the repo.

Each install is a ``pip install --target`` folder holding one version of a library and
its whole (pinned) dependency tree, ready to be a session's ``paths=[folder]``:

    <cache>/<python tag>/<install key>/  e.g. ~/.cache/subsession-test-packages/cp311/six-1.16.0/

The cache is ``$SUBSESSION_TEST_CACHE`` or ``~/.cache/subsession-test-packages``; it is
reused when complete (a marker file records exactly what was installed) and never
committed. Only PyPI is contacted, through pip. If pip cannot fetch, :func:`ensure`
raises :class:`FetchError` with a message saying how to fix it; tests turn that into a
failure, never a skip. ``scripts/fetch_test_packages`` fills the cache beforehand.

Versions were chosen so that wheels exist for CPython 3.9-3.13 on Linux, macOS and
Windows (pure-Python wheels, or binary wheels for every one of those versions):
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["COMPILED", "INSTALLS", "PAIRS", "FetchError", "cache_root", "ensure", "ensure_all"]

CERTIFI = "certifi==2024.8.30"

#: install key -> pinned requirements (the library first, then its dependency tree)
INSTALLS: dict[str, tuple[str, ...]] = {
    # six < 1.16 and packaging < 21 do not import on Python 3.12+ (no find_spec in
    # six.moves' importer; distutils is gone): the pairs must work on 3.9-3.13.
    "six-1.16.0": ("six==1.16.0",),
    "six-1.17.0": ("six==1.17.0",),
    "attrs-21.4.0": ("attrs==21.4.0",),
    "attrs-23.2.0": ("attrs==23.2.0",),
    "packaging-21.3": ("packaging==21.3", "pyparsing==2.4.7"),
    "packaging-24.1": ("packaging==24.1",),
    "requests-2.25.1": (
        "requests==2.25.1",
        "urllib3==1.26.20",
        "chardet==4.0.0",
        "idna==2.10",
        CERTIFI,
    ),
    "requests-2.32.3": (
        "requests==2.32.3",
        "urllib3==2.2.3",
        "charset-normalizer==3.4.0",  # binary (mypyc) wheels
        "idna==3.10",
        CERTIFI,
    ),
    # pydantic 1 ships Cython-compiled wheels; the pair uses its pure-Python wheel, the
    # compiled one is installed separately (test_pydantic1_cython_compiled)
    "pydantic-1.10.21": ("pydantic==1.10.21", "typing-extensions==4.12.2"),
    "pydantic-cython-1.10.21": ("pydantic==1.10.21", "typing-extensions==4.12.2"),
    "pydantic-2.10.6": (
        "pydantic==2.10.6",
        "pydantic-core==2.27.2",  # the compiled (Rust/PyO3) extension
        "annotated-types==0.7.0",
        "typing-extensions==4.12.2",
    ),
    # hypothesis ships a compiled (PyO3) core whose init registers submodules in
    # sys.modules by real name (hypothesis._native.internal)
    "hypothesis-6.170.17": ("hypothesis==6.170.17", "sortedcontainers==2.4.0"),
    "click-7.1.2": ("click==7.1.2",),
    "click-8.1.7": ("click==8.1.7",),
}


def _compiled_installs() -> dict[str, tuple[str, ...]]:
    """Compiled libraries in two versions each, pinned per CPython (binary wheels exist
    for a version range): ``<lib>-old`` and ``<lib>-new`` for the two sessions/host."""
    v = sys.version_info[:2]
    numpy_old = "numpy==2.1.3" if v >= (3, 13) else "numpy==1.26.4"
    numpy_new = "numpy==2.0.2" if v < (3, 10) else "numpy==2.2.6"
    installs: dict[str, tuple[str, ...]] = {
        "numpy-old": (numpy_old,),
        "numpy-new": (numpy_new,),
        "lxml-old": ("lxml==5.3.0",),
        "lxml-new": ("lxml==6.0.2",),
        "pyyaml-old": ("PyYAML==6.0.2",),
        "pyyaml-new": ("PyYAML==6.0.3",),
        "msgpack-old": ("msgpack==1.1.0",),
        "msgpack-new": ("msgpack==1.1.2",),
        "markupsafe-old": ("MarkupSafe==2.1.5" if v < (3, 13) else "MarkupSafe==3.0.1",),
        "markupsafe-new": ("MarkupSafe==3.0.2",),
        "orjson-old": ("orjson==3.10.7",),
        "orjson-new": ("orjson==3.10.12",),
        "pillow-old": ("Pillow==10.4.0",),
        "pillow-new": ("Pillow==11.0.0",),
        "protobuf-old": ("protobuf==4.25.5",),
        "protobuf-new": ("protobuf==5.28.3",),
    }
    # The real tool stack: pandas and scipy over numpy, one session's worth.
    installs["pandas-scipy"] = (
        "pandas==2.2.3",
        "scipy==1.13.1" if v < (3, 10) else "scipy==1.14.1",
        numpy_new,
        "python-dateutil==2.9.0.post0",
        "pytz==2024.2",
        "tzdata==2024.2",
        "six==1.16.0",
    )
    return installs


#: compiled libraries for tests/python/test_compiled.py (this interpreter's pins)
COMPILED: dict[str, tuple[str, ...]] = _compiled_installs()
INSTALLS.update(COMPILED)

#: library -> (older install key, newer install key)
PAIRS: dict[str, tuple[str, str]] = {
    "six": ("six-1.16.0", "six-1.17.0"),
    "attrs": ("attrs-21.4.0", "attrs-23.2.0"),
    "packaging": ("packaging-21.3", "packaging-24.1"),
    "requests": ("requests-2.25.1", "requests-2.32.3"),
    "pydantic": ("pydantic-1.10.21", "pydantic-2.10.6"),
    "click": ("click-7.1.2", "click-8.1.7"),
}

#: installs restricted to pure-Python wheels
PURE = frozenset({"pydantic-1.10.21"})

#: installs that need a newer Python than 3.9 (cp tag -> skipped below it)
MIN_PYTHON: dict[str, int] = {"hypothesis-6.170.17": 311}

MARKER = ".subsession-test-install.json"


class FetchError(RuntimeError):
    """pip could not install a test package."""


def cache_root() -> Path:
    """``$SUBSESSION_TEST_CACHE`` or ``~/.cache/subsession-test-packages``."""
    configured = os.environ.get("SUBSESSION_TEST_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "subsession-test-packages"


def python_tag(python: str | None = None) -> str:
    """``cp311`` for the interpreter that runs (binary wheels are per version)."""
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return f"cp{sys.version_info[0]}{sys.version_info[1]}"
    out = subprocess.run(
        [python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _marker(key: str, python: str) -> dict[str, object]:
    return {"requirements": list(INSTALLS[key]), "pure": key in PURE, "python": python_tag(python)}


def _marker_ok(folder: Path, expected: dict[str, object]) -> bool:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data == expected)


def _insert_before_requirements(cmd: list[str], n: int, extra: list[str]) -> list[str]:
    return cmd[: len(cmd) - n] + extra + cmd[len(cmd) - n :]


def ensure(key: str, *, python: str | None = None, verbose: bool = False) -> Path:
    """The install folder for ``key`` (see :data:`INSTALLS`), installing it if needed."""
    requirements = INSTALLS[key]
    python = python or sys.executable
    base = cache_root() / python_tag(python)
    folder = base / key
    marker = _marker(key, python)
    if _marker_ok(folder, marker):
        if verbose:
            print(f"cached     {key:<20} {folder}")
        return folder
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "--target",
        str(staging),
        "--no-deps",  # every dependency is pinned in INSTALLS
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
        *requirements,
    ]
    if key in PURE:
        tag = python_tag(python)
        pure = ["--platform", "any", "--implementation", "py", "--abi", "none"]
        pure += ["--python-version", f"{tag[2]}.{tag[3:]}"]
        cmd = _insert_before_requirements(cmd, len(requirements), pure)
    if verbose:
        print(f"installing {key:<20} {' '.join(requirements)}", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(_explain(key, requirements, str(exc))) from exc
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(_explain(key, requirements, (proc.stderr or proc.stdout).strip()))
    (staging / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    if folder.exists():  # an incomplete older install, or a concurrent fetch finished first
        if _marker_ok(folder, marker):
            shutil.rmtree(staging, ignore_errors=True)
            return folder
        shutil.rmtree(folder)
    os.replace(staging, folder)
    if verbose:
        print(f"installed  {key:<20} {folder}")
    return folder


def _explain(key: str, requirements: tuple[str, ...], detail: str) -> str:
    return (
        f"could not install the real test package {key} ({', '.join(requirements)}) "
        f"into {cache_root()} with pip from PyPI.\n"
        f"pip said: {detail[-2000:]}\n"
        "Fix: make PyPI reachable (proxy/index settings of pip) and run "
        "`python scripts/fetch_test_packages`, or point SUBSESSION_TEST_CACHE at a "
        "folder that already holds these installs."
    )


def ensure_all(*, python: str | None = None, verbose: bool = False) -> dict[str, Path]:
    version = int(python_tag(python)[2:])
    return {
        key: ensure(key, python=python, verbose=verbose)
        for key in INSTALLS
        if version >= MIN_PYTHON.get(key, 0)
    }

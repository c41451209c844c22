"""A real wheelhouse (wheels from PyPI) and the uv resolver, fetched once into the test
cache (:func:`realpkgs.cache_root`), for tests/python/test_requirements.py.

    <cache>/wheelhouse/<python tag>/   packaging 20.9 and 24.2, pyparsing 2.4.7 (pure),
                                       MarkupSafe 3.0.2 for this platform and for Windows
    <cache>/tools/uv-<version>/         ``pip install --target`` of the ``uv`` package

Only PyPI is contacted, through pip; a failure raises :class:`realpkgs.FetchError` with
the fix, which tests turn into a failure (never a skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from realpkgs import FetchError, cache_root

__all__ = ["COMPILED", "OTHER_PLATFORM", "PURE", "UV_VERSION", "ensure_uv", "ensure_wheelhouse"]

UV_VERSION = "0.13.8"
PURE = ("packaging==20.9", "packaging==24.2", "pyparsing==2.4.7")
COMPILED = "MarkupSafe==3.0.2"
#: a second lock target with its own compiled wheel in the wheelhouse
OTHER_PLATFORM = "macos_arm64" if sys.platform == "win32" else "windows_x86_64"
_PIP_PLATFORM = {"windows_x86_64": "win_amd64", "macos_arm64": "macosx_11_0_arm64"}
_MARKER = ".complete"


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"pip could not fetch test wheels ({' '.join(args[:6])}...): {last}; "
            "check PyPI access or run scripts/fetch_test_packages"
        )


def ensure_wheelhouse() -> Path:
    """The wheelhouse folder, downloading its wheels the first time."""
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    folder = cache_root() / "wheelhouse" / tag
    if (folder / _MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=folder.parent))
    try:
        common = ["download", "--no-deps", "--only-binary=:all:", "-d", str(staging)]
        for requirement in (*PURE, COMPILED):
            # one at a time: pip refuses two versions of one name in one call
            _pip([*common, requirement])
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        _pip(
            [
                *common,
                "--python-version",
                version,
                "--implementation",
                "cp",
                "--platform",
                _PIP_PLATFORM[OTHER_PLATFORM],
                COMPILED,
            ]
        )
        (staging / _MARKER).write_text("ok\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def ensure_uv() -> str:
    """The uv binary of the ``uv`` package, pip-installed into the cache once."""
    folder = cache_root() / "tools" / f"uv-{UV_VERSION}"
    binary = folder / "bin" / ("uv.exe" if sys.platform == "win32" else "uv")
    if binary.is_file():
        return str(binary)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".uv-", dir=folder.parent))
    try:
        _pip(["install", "--target", str(staging), "--no-deps", f"uv=={UV_VERSION}"])
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not binary.is_file():
        raise FetchError(f"the uv {UV_VERSION} package has no {binary.name} in bin/")
    return str(binary)

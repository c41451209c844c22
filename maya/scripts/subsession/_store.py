"""The wheel store: locked wheels unpacked once, shared by every session and show.

One folder per wheel, named after the wheel and its hash
(``packaging-24.2-py3-none-any-09abb1bccd265c01``), so two sessions or two shows that
lock the same wheel share one folder, and two different builds under one file name
never mix. A folder appears only whole: the wheel is checked against its sha256 and
unpacked into a temporary folder beside it, which is renamed into place last. An
interrupted sync leaves a ``.tmp-*`` folder that nothing reads and the next sync
removes.

The store is ``$SUBSESSION_STORE``, else the user's cache folder
(``~/.cache/subsession/store``, ``%LOCALAPPDATA%\\subsession\\store``,
``~/Library/Caches/subsession/store``).

:func:`sync` downloads (or copies from a ``find_links`` folder); :func:`session_paths`
only looks, so Maya's start-up never downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from subsession._requirements import (
    Lock,
    RequirementsError,
    Wheel,
    current_target,
    lock_path,
    read_lock,
)
from subsession._types import ConfiguredSession, ParsedConfig

__all__ = [
    "STORE_ENV",
    "SyncReport",
    "install_wheel",
    "session_paths",
    "store_root",
    "sync",
    "wheel_folder",
]

STORE_ENV = "SUBSESSION_STORE"
MARKER = ".subsession-wheel.json"
DOWNLOAD_TIMEOUT = 60.0
# A .tmp-* folder this old belongs to a sync that died, not to one still running.
STALE_TMP_SECONDS = 3600.0


def store_root() -> str:
    explicit = os.environ.get(STORE_ENV, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "subsession", "store")


def wheel_folder(wheel: Wheel, root: Optional[str] = None) -> str:
    """Where ``wheel`` is (or will be) unpacked."""
    stem = wheel.file[: -len(".whl")]
    return os.path.join(root or store_root(), f"{stem}-{wheel.sha256[:16]}")


# ---------------------------------------------------------------------------------------
# Installing one wheel
# ---------------------------------------------------------------------------------------


def install_wheel(wheel: Wheel, source: str, root: Optional[str] = None) -> str:
    """Unpack ``source`` (a wheel file or an http(s) URL) as ``wheel`` into the store.

    Returns the folder. A hash mismatch raises :class:`RequirementsError` and leaves
    the store as it was; so does any failure midway.
    """
    root = root or store_root()
    final = wheel_folder(wheel, root)
    if os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        archive = os.path.join(tmp, wheel.file)
        digest = _fetch(source, archive)
        if digest != wheel.sha256:
            raise RequirementsError(
                f"{wheel.file}: sha256 {digest} does not match the lock's {wheel.sha256}: "
                f"refusing it (from {source}); lock again if the wheel really changed"
            )
        target = os.path.join(tmp, "root")
        _unpack(archive, target, wheel)
        with open(os.path.join(target, MARKER), "w", encoding="utf-8") as f:
            json.dump({"file": wheel.file, "sha256": wheel.sha256}, f)
        try:
            # The one step that makes the folder visible, so it is whole or absent.
            os.rename(target, final)
        except OSError:
            if not os.path.isdir(final):  # another sync got there first: same content
                raise
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(source: str, dest: str) -> str:
    """Copy or download ``source`` to ``dest``; its sha256."""
    sha = hashlib.sha256()
    if source.startswith(("http://", "https://")):
        opened = urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT)
    else:
        opened = open(source, "rb")
    with opened as src, open(dest, "wb") as out:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            sha.update(block)
            out.write(block)
    return sha.hexdigest()


def _unpack(archive: str, target: str, wheel: Wheel) -> None:
    """A wheel's importable content: the archive root, plus ``*.data/purelib`` and
    ``*.data/platlib`` moved to the root as an installer would."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise RequirementsError(f"{wheel.file}: not a wheel (not a zip file)") from None
    with zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or ":" in parts[0]:
                raise RequirementsError(f"{wheel.file}: unsafe path {name!r} in the wheel")
            if len(parts) > 2 and parts[0].endswith(".data"):
                if parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: not importable, not needed
                parts = parts[2:]
            if info.is_dir() or not parts or not parts[-1]:
                continue
            dest = os.path.join(target, *parts)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (info.external_attr >> 16) & 0o777
            if mode & 0o111:
                os.chmod(dest, mode | 0o644)


# ---------------------------------------------------------------------------------------
# Sync
# ---------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What :func:`sync` did."""

    lock: str
    store: str
    target: str
    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.installed)} wheels installed, {len(self.present)} already there, "
            f"for {self.target} in {self.store}"
        )


def sync(
    paths: Sequence[str],
    *,
    lock_file: Optional[str] = None,
    target: Optional[str] = None,
    root: Optional[str] = None,
) -> SyncReport:
    """Install every locked wheel of ``target`` (default: the running Python) into the
    store. Raises :class:`RequirementsError` with one line when the lock is missing,
    stale, or a wheel cannot be had or does not match its hash."""
    from subsession.config import parse_config

    parsed = parse_config(list(paths))
    lock = read_lock(lock_file or lock_path(list(paths)))
    target = target or current_target()
    if target is None:
        raise RequirementsError(
            "no lock target for this Python and platform: sync with --target PYTHON-PLATFORM"
        )
    root = root or store_root()
    _clean_stale_tmp(root)
    report = SyncReport(lock.path, root, target)
    for name, settings in parsed["sessions"].items():
        if not settings["requirements"]:
            continue
        wheels = _locked_wheels(lock, name, settings, target, list(paths))
        for wheel in wheels:
            folder = wheel_folder(wheel, root)
            if os.path.isdir(folder):
                report.present.append(wheel.file)
                continue
            install_wheel(wheel, _source(wheel, settings), root)
            report.installed.append(wheel.file)
    return report


def _locked_wheels(
    lock: Lock, name: str, settings: ConfiguredSession, target: str, files: list[str]
) -> list[Wheel]:
    locked = lock.sessions.get(name)
    if locked is None or locked.requirements != settings["requirements"]:
        raise RequirementsError(
            f"session {name}: its requirements changed since {lock.path} was written: "
            f"run `{command('lock', files)}`"
        )
    if target not in locked.targets:
        raise RequirementsError(
            f"session {name}: {lock.path} has no wheels for {target}: add it to the "
            f"session's pythons/platforms and run `{command('lock', files)}`"
        )
    return locked.wheels.get(target, [])


def _source(wheel: Wheel, settings: ConfiguredSession) -> str:
    """Where to get ``wheel``: a find_links folder holding it, else its index URL."""
    for link in settings["find_links"]:
        candidate = os.path.join(link, wheel.file)
        if os.path.isfile(candidate):
            return candidate
    if wheel.url:
        return wheel.url
    raise RequirementsError(
        f"{wheel.file}: not in any find_links folder and the lock has no URL for it: "
        "put it back in the wheelhouse"
    )


def _clean_stale_tmp(root: str) -> None:
    try:
        names = os.listdir(root)
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        try:
            old = now - os.path.getmtime(path) > STALE_TMP_SECONDS
        except OSError:
            continue
        if name.startswith(".tmp-") and old:
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Start-up: paths from the store, never a download
# ---------------------------------------------------------------------------------------


def command(verb: str, files: Sequence[str], *extra: str) -> str:
    """The command line that fixes it, quoted for this OS's shell."""
    args = ["python", "-m", "subsession", verb, *[os.path.abspath(f) for f in files], *extra]
    if sys.platform == "win32":
        return subprocess.list2cmdline(args)
    import shlex

    return " ".join(shlex.quote(a) for a in args)


def session_paths(
    parsed: ParsedConfig, files: Sequence[str], root: Optional[str] = None
) -> tuple[dict[str, list[str]], list[str]]:
    """The store folders of each session with ``requirements``, and one line per
    session that is missing something (saying which command fixes it).

    Reads the lock and lists folders; downloads nothing. A session missing wheels
    still gets the folders that are there.
    """
    wanted = {n: s for n, s in parsed["sessions"].items() if s["requirements"]}
    if not wanted:
        return {}, []
    files = list(files)
    try:
        lock = read_lock(lock_path(files))
    except RequirementsError as error:
        return {}, [
            f"session {name}: {error}: run `{command('lock', files)}` then "
            f"`{command('sync', files)}`"
            for name in wanted
        ]
    target = current_target()
    root = root or store_root()
    folders: dict[str, list[str]] = {}
    problems: list[str] = []
    for name, settings in wanted.items():
        if target is None:
            problems.append(f"session {name}: this Python/platform is not a lock target")
            continue
        try:
            wheels = _locked_wheels(lock, name, settings, target, files)
        except RequirementsError as error:
            problems.append(str(error))
            continue
        have = [w for w in wheels if os.path.isdir(wheel_folder(w, root))]
        missing = [f"{w.name} {w.version}" for w in wheels if w not in have]
        folders[name] = [wheel_folder(w, root) for w in have]
        if missing:
            problems.append(
                f"session {name}: {len(missing)} locked wheel(s) for {target} not in the "
                f"store {root} ({', '.join(missing)}): run "
                # --target: the Python that runs the command need not be the host's (Maya's)
                f"`{command('sync', files, '--target', target)}`"
            )
    return folders, problems

"""Requirements to ``subsession.lock`` (SPEC §5.1, docs/config.md "Requirements").

``python -m subsession lock`` resolves each session's ``requirements`` with uv, once per
target (a Maya Python x a platform), and writes every chosen wheel (name, version, file
name, sha256, URL) into one TOML file. Same config and same index → byte-identical
file: sessions, targets and distributions are written in sorted order, nothing that
depends on the machine (time, absolute paths) is recorded.

Outside the lock command nothing here runs uv or touches the network: reading the lock
(:func:`read_lock`) is pure Python plus ``_core.parse_toml`` (``tomllib`` is missing
on Maya 2023/2024's Pythons).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from subsession import _core
from subsession._types import ConfiguredSession

__all__ = [
    "LOCK_ENV",
    "LOCK_NAME",
    "PLATFORMS",
    "PYTHONS",
    "Lock",
    "LockedSession",
    "RequirementsError",
    "Wheel",
    "current_target",
    "find_uv",
    "lock",
    "lock_path",
    "read_lock",
    "render_lock",
    "targets_of",
]

PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
"""The Maya Pythons a lock serves unless a session names ``pythons``."""

PLATFORMS: dict[str, str] = {
    # Maya 2023 still runs on CentOS 7 (glibc 2.17): manylinux2014 serves every Maya.
    "linux_x86_64": "x86_64-manylinux_2_17",
    "windows_x86_64": "x86_64-pc-windows-msvc",
    "macos_arm64": "aarch64-apple-darwin",
    "macos_x86_64": "x86_64-apple-darwin",
}
"""Platform names in the config and the lock, and uv's ``--python-platform`` for each."""

# The oldest macOS a supported Maya (2023) runs on; wheels needing newer are refused.
MACOS_DEPLOYMENT_TARGET = "11.0"

LOCK_NAME = "subsession.lock"
LOCK_ENV = "SUBSESSION_LOCK"
LOCK_VERSION = 1


class RequirementsError(ValueError):
    """A lock, sync or store problem, as one line saying what to do."""


@dataclass(frozen=True, order=True)
class Wheel:
    """One locked wheel."""

    name: str
    version: str
    file: str
    sha256: str
    url: Optional[str] = None

    @property
    def tag(self) -> str:
        """The wheel's tags, ``py3-none-any``."""
        return "-".join(self.file[: -len(".whl")].split("-")[-3:])


@dataclass
class LockedSession:
    """One session in the lock: what it was locked from, and the wheels per target."""

    requirements: list[str]
    targets: list[str]
    wheels: dict[str, list[Wheel]] = field(default_factory=dict)


@dataclass
class Lock:
    path: str
    sessions: dict[str, LockedSession]


def target_key(python: str, platform_name: str) -> str:
    return f"{python}-{platform_name}"


def targets_of(settings: ConfiguredSession) -> list[str]:
    """The targets of a session, in the canonical order (Python, then platform)."""
    pythons = settings.get("pythons") or list(PYTHONS)
    platforms = settings.get("platforms") or list(PLATFORMS)
    return [
        target_key(p, plat)
        for p in PYTHONS
        if p in pythons
        for plat in PLATFORMS
        if plat in platforms
    ]


def current_target() -> Optional[str]:
    """The target of the running interpreter, or ``None`` if no lock can serve it."""
    if sys.implementation.name != "cpython":
        return None
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    machine = platform.machine().lower()
    if sys.platform.startswith("linux") and machine in ("x86_64", "amd64"):
        name = "linux_x86_64"
    elif sys.platform == "win32" and machine in ("amd64", "x86_64"):
        name = "windows_x86_64"
    elif sys.platform == "darwin" and machine in ("arm64", "aarch64"):
        name = "macos_arm64"
    elif sys.platform == "darwin" and machine == "x86_64":
        name = "macos_x86_64"
    else:
        return None
    return target_key(python, name) if python in PYTHONS else None


def lock_path(files: Sequence[str]) -> str:
    """``$SUBSESSION_LOCK``, else ``subsession.lock`` beside the last (most specific)
    config file: the lock belongs to the layered result, which the last file finishes."""
    explicit = os.environ.get(LOCK_ENV, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    if not files:
        raise RequirementsError(
            "no config: name config files or set SUBSESSION_CONFIG (docs/config.md)"
        )
    return os.path.join(os.path.dirname(os.path.abspath(files[-1])), LOCK_NAME)


def find_uv() -> str:
    """uv on ``PATH``, else the binary of the ``uv`` Python package."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # type: ignore[import-not-found,unused-ignore]

        binary: str = uv.find_uv_bin()
        return binary
    except (ImportError, FileNotFoundError, AttributeError):
        pass
    raise RequirementsError(
        "uv is not installed: run `python -m pip install uv` (or put uv on PATH), then lock again"
    )


# ---------------------------------------------------------------------------------------
# Locking
# ---------------------------------------------------------------------------------------


def lock(
    paths: Sequence[str],
    *,
    lock_file: Optional[str] = None,
    no_index: bool = False,
    offline: bool = False,
    uv: Optional[str] = None,
    jobs: int = 4,
) -> str:
    """Resolve every session's requirements for each of its targets into the lock file.

    ``paths`` are the config files (studio first). Returns the lock file's path. Raises
    :class:`RequirementsError` (or ``ConfigError``) with one line; nothing is written
    then.
    """
    from subsession.config import parse_config

    parsed = parse_config(list(paths))
    wanted = {
        name: settings for name, settings in parsed["sessions"].items() if settings["requirements"]
    }
    if not wanted:
        raise RequirementsError(
            "no session names requirements: add requirements = [...] to a session (docs/config.md)"
        )
    binary = uv or find_uv()
    jobs_list = [(name, target) for name in sorted(wanted) for target in targets_of(wanted[name])]
    results: dict[tuple[str, str], list[Wheel]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            job: pool.submit(
                _resolve, binary, job[0], wanted[job[0]], job[1], no_index=no_index, offline=offline
            )
            for job in jobs_list
        }
        # The first failure in canonical order, so the same input reports the same error.
        for job in jobs_list:
            results[job] = futures[job].result()
    locked = {
        name: LockedSession(
            requirements=list(wanted[name]["requirements"]),
            targets=targets_of(wanted[name]),
            wheels={t: results[(name, t)] for t in targets_of(wanted[name])},
        )
        for name in sorted(wanted)
    }
    path = lock_file or lock_path(list(paths))
    _write_atomic(path, render_lock(locked))
    return path


def _resolve(
    uv: str,
    session: str,
    settings: ConfiguredSession,
    target: str,
    *,
    no_index: bool,
    offline: bool,
) -> list[Wheel]:
    python, _, platform_name = target.partition("-")
    with tempfile.TemporaryDirectory(prefix="subsession-lock-") as tmp:
        source = os.path.join(tmp, "requirements.in")
        with open(source, "w", encoding="utf-8") as f:
            f.write("\n".join(settings["requirements"]) + "\n")
        output = os.path.join(tmp, "pylock.toml")
        args = [
            uv,
            "pip",
            "compile",
            source,
            "--format",
            "pylock.toml",
            "-o",
            output,
            "--python-version",
            python,
            "--python-platform",
            PLATFORMS[platform_name],
            # Nothing is ever built: a version without a wheel for the target is skipped.
            "--only-binary",
            ":all:",
            "--no-header",
            "--quiet",
            # A user's uv.toml must not change what a studio config locks.
            "--no-config",
            # The target Python is only a version to resolve for: never fetch one, and
            # skip the interpreter search (seconds per call on a machine with pyenv).
            "--no-python-downloads",
            "--python",
            sys.executable,
        ]
        index_url = settings.get("index_url")
        if no_index:
            args.append("--no-index")
        elif index_url:
            args += ["--index-url", index_url]
        for link in settings.get("find_links") or []:
            args += ["--find-links", link]
        if offline:
            args.append("--offline")
        env = dict(os.environ, MACOSX_DEPLOYMENT_TARGET=MACOS_DEPLOYMENT_TARGET, NO_COLOR="1")
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, encoding="utf-8", errors="replace", env=env
            )
        except OSError as error:
            raise RequirementsError(f"cannot run uv ({uv}): {error}") from None
        if done.returncode != 0:
            raise RequirementsError(
                f"sessions.{session}.requirements cannot be locked for {target}: "
                f"{_one_line(done.stderr or done.stdout)}"
            )
        try:
            with open(output, encoding="utf-8") as f:
                pylock = _core.parse_toml(f.read(), output)
            return _wheels(pylock, session, target)
        except (OSError, ValueError, KeyError, TypeError) as error:
            if isinstance(error, RequirementsError):
                raise
            raise RequirementsError(
                f"sessions.{session}.requirements: uv's resolution for {target} is unreadable "
                f"({error}); is uv older than 0.6.15 (pylock.toml output)?"
            ) from None


def _one_line(text: str) -> str:
    """uv's report (several lines, tree drawing) as one line."""
    text = re.sub(r"[╰─▶×│├└┬]", " ", text)
    text = re.sub(r"(?m)^\s*(error|cause|hint):\s*", "", text)
    joined = ""
    for line in (line.strip() for line in text.splitlines()):
        if line:
            joined += (" " if joined.endswith(".") else ": " if joined else "") + line
    return re.sub(r"\s+", " ", joined).strip() or "uv failed without a message"


def _wheels(pylock: dict[str, Any], session: str, target: str) -> list[Wheel]:
    wheels: list[Wheel] = []
    python = target.partition("-")[0]
    for package in pylock.get("packages", []):
        name, version = str(package["name"]), str(package["version"])
        candidates = []
        for entry in package.get("wheels", []):
            location = str(entry.get("url") or entry.get("path") or "")
            file = str(entry.get("name") or location.replace("\\", "/").rsplit("/", 1)[-1])
            sha256 = (entry.get("hashes") or {}).get("sha256")
            if not file.endswith(".whl") or not sha256:
                continue
            url = location if location.startswith(("http://", "https://")) else None
            candidates.append(Wheel(name, version, file, str(sha256), url))
        if not candidates:
            raise RequirementsError(
                f"sessions.{session}.requirements: {name} {version} has no wheel for {target}: "
                f"pin a version that ships one, or drop {target} with pythons/platforms"
            )
        wheels.append(max(candidates, key=lambda w: (_rank(w.file, python), w.file)))
    return sorted(wheels)


def _rank(file: str, python: str) -> tuple[int, int, tuple[int, ...]]:
    """How specific a wheel is, for the one target uv found it compatible with; the
    best-ranked is the one pip would install (exact ABI, then newest platform)."""
    interpreters, abis, platforms = file[: -len(".whl")].split("-")[-3:]
    cp = "cp" + python.replace(".", "")
    best: tuple[int, int, tuple[int, ...]] = (0, 0, ())
    for interpreter in interpreters.split("."):
        for abi in abis.split("."):
            abi_rank = 3 if abi == cp else 2 if abi == "abi3" else 1 if interpreter == cp else 0
            for plat in platforms.split("."):
                plat_rank = 0 if plat == "any" else 1 if "universal" in plat else 2
                version = tuple(int(n) for n in re.findall(r"\d+", plat))
                best = max(best, (abi_rank, plat_rank, version))
    return best


# ---------------------------------------------------------------------------------------
# The lock file
# ---------------------------------------------------------------------------------------


def _string(value: str) -> str:
    # JSON's escapes are TOML basic-string escapes (ensure_ascii=False: no surrogates).
    return json.dumps(value, ensure_ascii=False)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def render_lock(sessions: dict[str, LockedSession]) -> str:
    """The lock file's text: sorted, so equal input gives equal bytes."""
    out = [
        "# subsession.lock: written by `python -m subsession lock`; edit the config, not",
        "# this file. `python -m subsession sync` installs the wheels of the running Python.",
        f"version = {LOCK_VERSION}",
    ]
    for name in sorted(sessions):
        locked = sessions[name]
        out += [
            "",
            f"[sessions.{_key(name)}]",
            "requirements = [" + ", ".join(_string(r) for r in locked.requirements) + "]",
            "targets = [" + ", ".join(_string(t) for t in locked.targets) + "]",
        ]
        for target in locked.targets:
            for wheel in sorted(locked.wheels.get(target, [])):
                out += [
                    "",
                    f"[[sessions.{_key(name)}.wheels.{_string(target)}]]",
                    f"name = {_string(wheel.name)}",
                    f"version = {_string(wheel.version)}",
                    f"file = {_string(wheel.file)}",
                    f"sha256 = {_string(wheel.sha256)}",
                ]
                if wheel.url:
                    out.append(f"url = {_string(wheel.url)}")
    return "\n".join(out) + "\n"


def read_lock(path: str) -> Lock:
    """The lock at ``path``; :class:`RequirementsError` if missing or damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise RequirementsError(f"{path}: no lock file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RequirementsError(f"{path}: cannot read the lock file: {error}") from None
    try:
        data = _core.parse_toml(text, path)
        if data.get("version") != LOCK_VERSION:
            raise RequirementsError(
                f"{path}: lock version {data.get('version')!r} is not {LOCK_VERSION}: "
                "run `python -m subsession lock` again"
            )
        sessions: dict[str, LockedSession] = {}
        for name, entry in data.get("sessions", {}).items():
            sessions[name] = LockedSession(
                requirements=[str(r) for r in entry["requirements"]],
                targets=[str(t) for t in entry["targets"]],
                wheels={
                    target: [
                        Wheel(
                            str(w["name"]),
                            str(w["version"]),
                            str(w["file"]),
                            str(w["sha256"]),
                            str(w["url"]) if w.get("url") else None,
                        )
                        for w in wheels
                    ]
                    for target, wheels in entry.get("wheels", {}).items()
                },
            )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        if isinstance(error, RequirementsError):
            raise
        raise RequirementsError(
            f"{path}: damaged lock file ({error}): run `python -m subsession lock` again"
        ) from None
    return Lock(path, sessions)


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".subsession-lock-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

"""Which version of every distribution each session and the host loaded (SPEC §5.1).

A module belongs to the distribution whose ``RECORD`` lists its file, found through
``importlib.metadata`` in the folders the module was imported from (a session's
``paths``, then ``sys.path``). Only what is *loaded* counts: an installed distribution
nobody imported is not listed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import os
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

__all__ = ["LoadedDistribution", "versions"]

HOST = None
"""The ``session`` of what the host (the global interpreter) loaded."""


@dataclass(frozen=True)
class LoadedDistribution:
    """One distribution as one session (or the host) loaded it."""

    name: str
    """The distribution's name as its metadata spells it (``PyYAML``)."""
    version: str
    session: Optional[str]
    """The session's name (its prefix if anonymous); ``None`` for the host."""
    location: str
    """The folder holding the distribution (a store folder, site-packages...)."""
    modules: tuple[str, ...]
    """The modules loaded from it, by real name."""
    extensions: tuple[str, ...]
    """The compiled extension files among them."""
    conflict: bool
    """Another session or the host loaded this distribution at another version."""
    shared_with_host: tuple[str, ...]
    """For a session: its compiled files the host loaded too. One loaded file has one
    C state, so the session and the host share it whatever their Python code does."""

    @property
    def key(self) -> str:
        return _normalize(self.name)


def _normalize(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


# Per folder, its (mtime, file map, top-level map): installing or removing a
# distribution changes the folder's mtime (its dist-info appears or goes), so the
# Versions view refreshing after every import rereads no RECORD that did not change.
_CACHE: dict[str, tuple[int, dict[str, tuple[str, str, str]], dict[str, tuple[str, str, str]]]] = {}


class _Index:
    """File -> distribution, built lazily per search folder (one RECORD read each)."""

    def __init__(self) -> None:
        self._roots: dict[str, dict[str, tuple[str, str, str]]] = {}
        # Top-level module -> distribution from top_level.txt, for a distribution whose
        # RECORD does not list the file (hand-made or partial installs).
        self._tops: dict[str, dict[str, tuple[str, str, str]]] = {}

    def _root(self, root: str) -> dict[str, tuple[str, str, str]]:
        found = self._roots.get(root)
        if found is None:
            try:
                mtime = os.stat(root).st_mtime_ns
            except OSError:
                mtime = -1
            cached = _CACHE.get(root)
            if cached is not None and cached[0] == mtime:
                self._roots[root], self._tops[root] = cached[1], cached[2]
                return cached[1]
            found = {}
            tops: dict[str, tuple[str, str, str]] = {}
            self._tops[root] = tops
            try:
                dists = list(importlib.metadata.distributions(path=[root]))
            except Exception:  # an unreadable folder lists nothing, not an error
                dists = []
            for dist in dists:
                try:
                    name, version = dist.metadata["Name"], dist.version
                    files = dist.files or []
                except Exception:
                    continue
                if not name:
                    continue
                try:
                    top_level = dist.read_text("top_level.txt") or ""
                except Exception:
                    top_level = ""
                for top in top_level.split():
                    tops.setdefault(top, (name, version, root))
                for entry in files:
                    path = _norm(str(dist.locate_file(entry)))
                    found.setdefault(path, (name, version, root))
            self._roots[root] = found
            _CACHE[root] = (mtime, found, tops)
        return found

    def lookup(self, name: str, file: str, roots: Iterable[str]) -> Optional[tuple[str, str, str]]:
        normalized = _norm(file)
        top = name.split(".", 1)[0]
        for root in roots:
            if not root or not os.path.isdir(root):
                continue
            if not normalized.startswith(_norm(root) + os.sep):
                continue
            hit = self._root(root).get(normalized) or self._tops[root].get(top)
            if hit is not None:
                return hit
        return None


def _root_of(name: str, file: str) -> str:
    """The folder ``name`` was imported from: ``/r`` for ``a.b`` at ``/r/a/b.py`` or
    ``/r/a/b/__init__.py``, even when ``/r`` has left ``sys.path`` since."""
    root = os.path.dirname(file)
    depth = name.count(".") + (os.path.basename(file).startswith("__init__.") and 1)
    for _ in range(depth):
        root = os.path.dirname(root)
    return root


def _is_extension(file: str) -> bool:
    return file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _collect(
    index: _Index,
    session: Optional[str],
    modules: Mapping[str, types.ModuleType],
    roots: list[str],
) -> dict[str, tuple[str, str, str, list[str], list[str]]]:
    """name -> (name, version, location, modules, extension files) for one owner."""
    found: dict[str, tuple[str, str, str, list[str], list[str]]] = {}
    for real, module in sorted(modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        hit = index.lookup(real, file, [_root_of(real, file), *roots])
        if hit is None:
            continue
        name, version, location = hit
        entry = found.setdefault(_normalize(name), (name, version, location, [], []))
        entry[3].append(real)
        if _is_extension(file):
            entry[4].append(_norm(file))
    return found


def versions() -> list[LoadedDistribution]:
    """Every distribution loaded anywhere: one record per (session or host,
    distribution), sorted by distribution then owner (host first).

    ``conflict`` marks a distribution loaded at two versions (what sessions are for);
    ``shared_with_host`` names compiled files a session and the host both loaded (the
    dangerous case: their C state is one).
    """
    from subsession import _session

    index = _Index()
    path_roots = [os.path.abspath(p) for p in sys.path if isinstance(p, str) and p]
    owners: list[tuple[Optional[str], dict[str, tuple[str, str, str, list[str], list[str]]]]] = []
    prefixes: list[str] = []
    sessions = [s for s in _session.sessions() if not s.closed]
    for session in sessions:
        prefixes.append(session.prefix + ".")
        try:
            modules = session.modules
            roots = list(session.paths) + path_roots
        except Exception:  # closed meanwhile
            continue
        owners.append(
            (session.name or session.prefix, _collect(index, session.name, modules, roots))
        )
    host_modules = {
        name: module
        for name, module in list(sys.modules.items())
        if isinstance(module, types.ModuleType)
        and not name.startswith("__subsession_")
        and not name.startswith(tuple(prefixes))
    }
    host = _collect(index, None, host_modules, path_roots)
    owners.insert(0, (HOST, host))
    host_files = {f for entry in host.values() for f in entry[4]}

    seen: dict[str, set[str]] = {}
    for _, found in owners:
        for key, entry in found.items():
            seen.setdefault(key, set()).add(entry[1])
    records = []
    for owner, found in owners:
        for key, (name, version, location, mods, exts) in found.items():
            shared = () if owner is HOST else tuple(sorted(f for f in exts if f in host_files))
            records.append(
                LoadedDistribution(
                    name=name,
                    version=version,
                    session=owner,
                    location=location,
                    modules=tuple(mods),
                    extensions=tuple(sorted(set(exts))),
                    conflict=len(seen[key]) > 1,
                    shared_with_host=shared,
                )
            )
    records.sort(key=lambda r: (r.key, r.session is not HOST, r.session or "", r.version))
    return records

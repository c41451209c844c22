"""The dictionaries that cross the seam between :mod:`subsession._core` and the facade.

One definition each, shared by the stubs of ``_core`` and the Python modules.
"""

from __future__ import annotations

from typing import Optional, TypedDict

__all__ = ["ConfiguredSession", "ParsedConfig", "SessionSettings", "Settings"]


class Settings(TypedDict):
    """A session's settings, the keyword arguments of ``Session.configure``."""

    paths: list[str]
    env: dict[str, Optional[str]]
    keep_global: list[str]
    inherit_env: bool
    inherit_paths: bool


class SessionSettings(Settings):
    """One configured session: its :class:`Settings` and the ``startup`` module."""

    startup: Optional[str]


class ConfiguredSession(SessionSettings):
    """A config file's session: :class:`SessionSettings` and what ``python -m
    subsession lock`` reads (docs/config.md "Requirements")."""

    requirements: list[str]
    index_url: Optional[str]
    find_links: list[str]
    pythons: list[str]
    platforms: list[str]


class ParsedConfig(TypedDict):
    """The layered studio config: extra host modules and sessions in definition order."""

    host_modules: list[str]
    sessions: dict[str, ConfiguredSession]

"""Fake ``maya.mel``: ``eval`` runs MEL command statements.

Enough MEL for commands in command syntax: ``subSession -m "toolA.ui" -fn show toolA;``
(words separated by blanks, double-quoted strings with ``\\"``, ``\\\\``, ``\\n``
escapes, statements ended by ``;``, ``//`` comments) and ``loadPlugin``/
``unloadPlugin``, reading a global variable (``$tmp = $gMainWindowMenu``, Maya's menu
names; ``global string $x;`` declarations) and ``buildViewMenu <menu>`` (and
``buildFileMenu``), Maya's procedures that fill its main menus. Every word
reaches the command as a string, as in MEL; the result of the last statement is
returned (bools as ints, as MEL has no bool type).
"""

from __future__ import annotations

from typing import Any

from maya import _host, _ui

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def eval(script: str) -> Any:  # noqa: A001 - Maya's name
    """Run ``script``, as Maya does: a failing statement prints one MEL error line
    (``// Error: line 1: <message> //``) and stops the script, and ``eval`` raises
    ``RuntimeError("Error occurred during execution of MEL script")``."""
    outer = _host.state.language
    _host.state.language = "mel"
    try:
        return _run(script)
    except _Failed:
        raise RuntimeError("Error occurred during execution of MEL script") from None
    finally:
        _host.state.language = outer


class _Failed(Exception):
    """A statement failed; its error line is printed."""


def _run(script: str) -> Any:
    result: Any = None
    for words in _statements(script):
        try:
            result = _statement(words)
        except (RuntimeError, TypeError) as error:
            _host.message("error", f"line 1: {error}")
            raise _Failed from None
    return result


def _statement(words: list[str]) -> Any:
    from maya import cmds

    name, args = words[0], words[1:]
    if name == "global":  # a declaration: global string $gMainWindowMenu;
        return None
    if name.startswith("$") and len(args) == 2 and args[0] == "=":
        return _global(args[1])
    if name.startswith("$") and name.find("=") > 0:
        return _global(name.split("=", 1)[1])
    if name in ("buildViewMenu", "buildFileMenu"):
        _ui.build_menu(name, args[0] if args else "")
        return None
    if name == "help":
        return cmds.help(*args)
    if name in ("loadPlugin", "unloadPlugin"):
        quiet = any(w in ("-quiet", "-qt") for w in args)
        files = [w for w in args if not w.startswith("-")]
        if name == "loadPlugin":
            return cmds.loadPlugin(*files, quiet=quiet)
        return cmds.unloadPlugin(*files)
    return _host.invoke(name, list(args), mel=True)


def _global(word: str) -> str:
    if _host.state.batch or not word.startswith("$") or word[1:] not in _ui.MEL_GLOBALS:
        raise RuntimeError(f'"{word}" is an undeclared variable.')
    return _ui.MEL_GLOBALS[word[1:]]


def _statements(script: str) -> list[list[str]]:
    statements: list[list[str]] = []
    words: list[str] = []
    i = 0
    while i < len(script):
        char = script[i]
        if script.startswith("//", i):
            i = script.find("\n", i) if "\n" in script[i:] else len(script)
        elif char == ";":
            if words:
                statements.append(words)
            words = []
            i += 1
        elif char.isspace():
            i += 1
        elif char == '"':
            text, i = _quoted(script, i + 1)
            words.append(text)
        else:
            start = i
            while i < len(script) and not script[i].isspace() and script[i] not in ';"':
                i += 1
            words.append(script[start:i])
    if words:
        statements.append(words)
    return statements


def _quoted(script: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(script):
        char = script[i]
        if char == "\\" and i + 1 < len(script):
            out.append(_ESCAPES.get(script[i + 1], script[i + 1]))
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise RuntimeError("Syntax error: unterminated string in MEL script")

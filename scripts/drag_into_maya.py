"""Install the subsession Maya module: drag this file onto Maya's viewport.

It copies the module folder this file sits in (``subsession/``, extracted from
``subsession-maya-<version>.zip``) into your user's Maya modules folder
(``<user app dir>/modules``: ``~/maya/modules``, ``~/Documents/maya/modules``,
``~/Library/Preferences/Autodesk/maya/modules``) as ``subsession-<version>/`` and points
``subsession.mod`` at it, then loads the ``subSession`` plug-in into the running Maya, so
there is no restart. The next Maya start finds the module by itself.

Dropping a newer zip's file upgrades without deleting anything Maya may have loaded
(on Windows a loaded ``_core.pyd`` cannot be deleted, and a half-deleted install would
not start): the new version is copied beside the old one under a temporary name,
renamed when complete, and ``subsession.mod`` is switched last, in one atomic replace.
The old folder is marked obsolete; the first Maya that starts with the new version
removes it, once no Maya holds it open. A failed or interrupted copy changes nothing:
the old version keeps working. The running Maya keeps the version it loaded until it
restarts; what changed is printed from ``CHANGELOG.md``.

Outside Maya (a TD, a deployment script)::

    python drag_into_maya.py --target /studio/maya/modules
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import Any, Optional

MODULE = "subsession"
PLUGIN = "subSession.py"
#: Maya 2023 is the first with Python 3.9, the oldest CPython the compiled core serves.
MIN_MAYA_API = 20230000
#: Written into a replaced install's folder; ``subsession.maya`` removes such folders at
#: start-up (:func:`subsession.maya.remove_old_installs`). The same name is used there.
OBSOLETE_MARKER = ".subsession-obsolete"
#: A copy under way (or interrupted) is named ``.incomplete-subsession-...``: Maya never
#: reads it, and an interrupted one is removed at a later start-up.
INCOMPLETE_PREFIX = ".incomplete-"


def module_root() -> str:
    """The extracted module folder: the folder of this file."""
    return os.path.dirname(os.path.abspath(__file__))


def module_version(root: str) -> str:
    """The ``__version__`` of the package in the module folder ``root``."""
    init = os.path.join(root, "scripts", MODULE, "__init__.py")
    with open(init, encoding="utf-8") as handle:
        found = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M)
    if not found:
        raise RuntimeError(f"{init} has no __version__; extract the module zip again")
    return found.group(1)


def active_install(target: str) -> Optional[str]:
    """The folder ``target/subsession.mod`` points at (None without a .mod)."""
    mod = os.path.join(target, "subsession.mod")
    if not os.path.isfile(mod):
        return None
    with open(mod, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("+ "):
                words = line.split()
                if len(words) >= 4 and words[-3] == MODULE:
                    path = words[-1]
                    return os.path.normpath(
                        path if os.path.isabs(path) else os.path.join(target, path)
                    )
    return None


def _free_folder(target: str, version: str) -> str:
    """``subsession-<version>``, or ``-2``, ``-3``... when an earlier copy (possibly
    loaded by a running Maya) has that name: an existing folder is never written into."""
    name = f"{MODULE}-{version}"
    candidate, n = name, 1
    while os.path.lexists(os.path.join(target, candidate)):
        n += 1
        candidate = f"{name}-{n}"
    return os.path.join(target, candidate)


def _same(a: str, b: Optional[str]) -> bool:
    return b is not None and os.path.normcase(os.path.abspath(a)) == os.path.normcase(
        os.path.abspath(b)
    )


def install(target: str, source: Optional[str] = None) -> str:
    """Install the module folder ``source`` into the modules folder ``target``; returns
    the installed folder.

    Copies ``source`` to ``target/subsession-<version>/`` (a new name if taken), then
    replaces ``target/subsession.mod`` to point at it; marks the install it replaces
    obsolete. Never deletes or overwrites a file of an earlier install.
    """
    source = os.path.abspath(source or module_root())
    mod_file = os.path.join(source, "subsession.mod")
    if not os.path.isfile(mod_file) or not os.path.isdir(os.path.join(source, "scripts")):
        raise RuntimeError(
            f"{source} is not an extracted subsession module (no subsession.mod/scripts); "
            "extract subsession-maya-<version>.zip and drop subsession/drag_into_maya.py"
        )
    target = os.path.abspath(os.path.expanduser(target))
    os.makedirs(target, exist_ok=True)
    old = active_install(target)
    if os.path.normcase(os.path.dirname(source)) == os.path.normcase(target):
        installed = source  # a folder already in place (the installed copy dropped again)
    else:
        installed = _free_folder(target, module_version(source))
        partial = os.path.join(
            target, f"{INCOMPLETE_PREFIX}{os.path.basename(installed)}-{os.getpid()}"
        )
        try:
            shutil.copytree(source, partial, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            os.rename(partial, installed)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            still = f"; {old} is still installed and works" if old else ""
            if isinstance(error, Exception):
                raise RuntimeError(f"installing into {target} failed ({error}){still}") from error
            raise
    _write_mod(mod_file, target, os.path.basename(installed))
    if old is not None and not _same(old, installed) and os.path.isdir(old):
        # Only folders an installer made (never a checkout a .mod pointed at by hand).
        if os.path.normcase(os.path.dirname(old)) == os.path.normcase(target):
            with open(os.path.join(old, OBSOLETE_MARKER), "w", encoding="utf-8") as handle:
                handle.write(f"replaced by {os.path.basename(installed)}\n")
    return installed


def _write_mod(mod_file: str, target: str, folder: str) -> None:
    """``target/subsession.mod`` pointing at ``folder``, replaced in one step (a reader
    sees the old file or the new one, never half of it)."""
    with open(mod_file, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    text = "\n".join(
        " ".join([*line.split()[:-1], folder]) if line.startswith("+ ") else line for line in lines
    )
    final = os.path.join(target, "subsession.mod")
    temporary = f"{final}.{os.getpid()}.new"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(temporary, final)


def changes_since(installed: str, old_version: Optional[str]) -> str:
    """The ``CHANGELOG.md`` sections of ``installed`` newer than ``old_version`` (all of
    the newest section without one); empty when there is no changelog."""
    path = os.path.join(installed, "CHANGELOG.md")
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    sections = re.split(r"(?m)^(?=## )", text)
    picked = []
    for section in sections:
        head = re.match(r"## \[?([0-9][^\]\s]*)", section)
        if head is None:
            continue
        if old_version is not None and not _newer(head.group(1), old_version):
            break
        picked.append(section.strip())
        if old_version is None:
            break
    return "\n\n".join(picked)


def _newer(a: str, b: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    return key(a) > key(b)


def activate(installed: str) -> None:
    """Make the installed module usable in this Maya session without a restart."""
    scripts = os.path.join(installed, "scripts")
    if scripts not in sys.path:
        sys.path.append(scripts)
    plugins = os.path.join(installed, "plug-ins")
    current = os.environ.get("MAYA_PLUG_IN_PATH", "")
    if plugins not in current.split(os.pathsep):
        os.environ["MAYA_PLUG_IN_PATH"] = os.pathsep.join(p for p in (current, plugins) if p)


def onMayaDroppedPythonFile(obj: Any = None) -> None:
    """Maya calls this when the file is dropped on the viewport."""
    from maya import cmds

    api = int(cmds.about(apiVersion=True))
    if api < MIN_MAYA_API:
        cmds.error(
            f"subsession needs Maya 2023 or later (this is API {api}); nothing was installed"
        )
        return
    target = os.path.join(cmds.internalVar(userAppDir=True), "modules")
    old = active_install(target)
    old_version = None
    if old is not None and os.path.isdir(old):
        try:
            old_version = module_version(old)
        except (OSError, RuntimeError):
            old_version = None
    installed = install(target)
    version = module_version(installed)
    if cmds.pluginInfo(PLUGIN, query=True, loaded=True):
        # This Maya runs the version it loaded; files may be in use: restart to switch.
        print(
            f"subsession: {version} installed into {installed}; restart Maya to use it "
            f"(this session keeps {old_version or 'the loaded version'})"
        )
    else:
        activate(installed)
        cmds.loadPlugin(os.path.join(installed, "plug-ins", PLUGIN))
        print(f"subsession: {version} installed into {installed}; the subSession command is loaded")
    changes = changes_since(installed, old_version if old_version != version else None)
    if changes:
        print(f"subsession: what changed\n{changes}")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="drag_into_maya.py", description=__doc__)
    parser.add_argument("--target", required=True, help="the Maya modules folder")
    args = parser.parse_args(argv)
    print(install(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())

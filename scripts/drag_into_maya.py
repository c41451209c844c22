"""Install the subsession Maya module: drag this file onto Maya's viewport.

It copies the module folder this file sits in (``subsession/``, extracted from
``subsession-maya-<version>.zip``) and ``subsession.mod`` into your user's Maya
modules folder (``<user app dir>/modules``: ``~/maya/modules``,
``~/Documents/maya/modules``, ``~/Library/Preferences/Autodesk/maya/modules``), then
loads the ``subSession`` plug-in into the running Maya, so there is no restart. The
next Maya start finds the module by itself. Dropping it again replaces the install.

Outside Maya (a TD, a deployment script)::

    python drag_into_maya.py --target /studio/maya/modules
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Optional

MODULE = "subsession"
PLUGIN = "subSession.py"
#: Maya 2023 is the first with Python 3.9, the oldest CPython the compiled core serves.
MIN_MAYA_API = 20230000


def module_root() -> str:
    """The extracted module folder: the folder of this file."""
    return os.path.dirname(os.path.abspath(__file__))


def install(target: str, source: Optional[str] = None) -> str:
    """Copy the module into the modules folder ``target``; returns the installed folder.

    Writes ``target/subsession.mod`` (the module's own, pointing at ``subsession``) and
    ``target/subsession/``, replacing an earlier install.
    """
    source = os.path.abspath(source or module_root())
    mod_file = os.path.join(source, "subsession.mod")
    if not os.path.isfile(mod_file) or not os.path.isdir(os.path.join(source, "scripts")):
        raise RuntimeError(
            f"{source} is not an extracted subsession module (no subsession.mod/scripts); "
            "extract subsession-maya-<version>.zip and drop subsession/drag_into_maya.py"
        )
    target = os.path.abspath(os.path.expanduser(target))
    installed = os.path.join(target, MODULE)
    os.makedirs(target, exist_ok=True)
    with open(mod_file, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    text = "\n".join(
        " ".join([*line.split()[:-1], MODULE]) if line.startswith("+ ") else line for line in lines
    )
    if os.path.normcase(installed) != os.path.normcase(source):
        if os.path.isdir(installed):
            shutil.rmtree(installed)
        shutil.copytree(source, installed, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(target, "subsession.mod"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return installed


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
    installed = install(target)
    activate(installed)
    if not cmds.pluginInfo(PLUGIN, query=True, loaded=True):
        cmds.loadPlugin(os.path.join(installed, "plug-ins", PLUGIN))
    print(f"subsession: installed into {installed}; the subSession command is loaded")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="drag_into_maya.py", description=__doc__)
    parser.add_argument("--target", required=True, help="the Maya modules folder")
    args = parser.parse_args(argv)
    print(install(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())

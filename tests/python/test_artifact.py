"""Which build the suite runs against: the checkout, a wheel, or the module zip.

``scripts/test`` runs the whole suite once more against the folder extracted from the
module zip (``$SUBSESSION_TEST_MODULE``): the package comes from its
``scripts/subsession/``, the compiled core from ``platforms/<os>/``, the plug-in from
its ``plug-ins/``. This test proves the run used them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import subsession
import subsession._core
from subsession._platform import maya_platform

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402

CORE_NAMES = {"linux": "_core.abi3.so", "mac": "_core.abi3.so", "win64": "_core.pyd"}


def test_the_build_under_test() -> None:
    package = Path(subsession.__file__).resolve().parent
    core = Path(subsession._core.__file__).resolve()
    module = os.environ.get("SUBSESSION_TEST_MODULE")
    if module:
        root = Path(module).resolve()
        assert package == root / "scripts" / "subsession"
        assert core == root / "platforms" / maya_platform() / CORE_NAMES[maya_platform()]
        assert fakehost.PLUGINS.resolve() == root / "plug-ins"
        assert not list(package.glob("_core*.so")) and not list(package.glob("_core*.pyd"))
    else:
        assert core.parent == package  # a checkout build or an installed wheel
        assert fakehost.PLUGINS.resolve() == fakehost.ROOT / "maya" / "plug-ins"

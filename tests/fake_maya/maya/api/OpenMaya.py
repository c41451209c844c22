"""Fake ``maya.api.OpenMaya``: as Maya's, a re-export of :mod:`maya.api._OpenMaya_py2`
(Maya's ``maya/api/OpenMaya.py`` is ``from maya.api._OpenMaya_py2 import *``)."""

from maya.api._OpenMaya_py2 import *  # noqa: F403
from maya.api._OpenMaya_py2 import _parse  # noqa: F401  (the fake host's command parser)

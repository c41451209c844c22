"""A small, faithful fake of Maya's Python packages, for tests without Maya.

Put ``tests/fake_maya`` on ``sys.path`` and ``import maya.cmds`` & co. work the way
Maya's do for a scripted command plug-in: ``cmds.loadPlugin`` runs the plug-in's
``initializePlugin`` with a plug-in object, registered commands appear in
``maya.cmds`` and MEL, Python keyword arguments and MEL words are turned into flag
uses checked against the command's ``MSyntax``, and ``MArgDatabase`` answers from
them. :mod:`maya._host` holds the fake's state and the test hooks (``reset``,
``run_idle``, ``messages``, ``batch``).

Only what subsession uses is faked; anything else raises AttributeError.
"""

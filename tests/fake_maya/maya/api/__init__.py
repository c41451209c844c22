"""Fake ``maya.api`` (see :mod:`maya`)."""

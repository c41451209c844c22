"""Helpers of ``scripts/bench``: package generation (:mod:`.gen`) and the measurement
worker run in fresh interpreters (:mod:`.worker`)."""

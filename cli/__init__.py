"""The composition root: the ``scheduler`` command, ``scheduler up`` and the demo wiring.

The one package that knows every part (core, beat, worker runtime, job types); nothing imports it.
"""

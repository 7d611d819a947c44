"""Compatibility layers: drop-in APIs of other Gearman libraries, built on geartrain's protocol core.

* ``geartrain.compat.gearman`` — python-gearman 2.x (``import geartrain.compat.gearman as gearman``).
"""

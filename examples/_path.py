"""Lets the examples run from a source checkout where geartrain is not installed."""

import sys
from pathlib import Path

try:
    import geartrain  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

"""geartrain: Gearman, rebuilt in Python — job server, client and worker libraries, command line."""

__version__ = "0.1.0"

"""Interop tests: geartrain against real Gearman peers (C gearmand, libgearman tools, C, Perl, PHP)."""

"""server/app.py: process tuning (big payload buffers reuse heap memory)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

FAULTS = """
import json, resource, sys
from geartrain.server.app import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
def arrive(i):
    # a 1 MiB packet read as the event loop reads it (256 KiB at a time), then joined into one payload
    chunks = [bytes(256 << 10) for _ in range(4)] + [bytes(12 + i % 64)]
    return b"".join(chunks)
keep = [arrive(i) for i in range(8)]  # as many 1 MiB payloads in flight as scenario 5c keeps
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(200):
    keep[i % 8] = arrive(i)  # a payload arrives, an older one is done with
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"tuned": tuned, "faults": after - before}))
"""


def faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_big_payloads_reuse_heap_memory_instead_of_faulting_in_fresh_pages():
    plain, tuned = faults("plain"), faults("tuned")
    assert tuned["tuned"] is True
    # untuned, glibc maps the 256 KiB reads afresh and trims the heap under the joined payloads: page
    # faults (each a zeroed 4 KiB page) for most of the 200 MiB that pass through (8,186 here)
    assert plain["faults"] > 200 * 20, plain
    assert tuned["faults"] < plain["faults"] / 4, (plain, tuned)

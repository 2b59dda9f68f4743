"""factors.allocator: freed panels stay in the process (no page faults on the next one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, resource, sys
import numpy as np
from factors.allocator import keep_freed_memory
ok = keep_freed_memory()
again = keep_freed_memory()
for _ in range(3):                          # grow the heap to the working set
    a = np.ones((2187, 580)); b = a * 2.0; del a, b
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):                         # 20 x two fresh 10 MB panels, freed each time
    a = np.ones((2187, 580)); b = a * 2.0; del a, b
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def work():                                 # a pool thread of a GP run: several live panels
    for _ in range(3):                      # (80 MB: more than one 64 MiB arena sub-heap)
        live = [np.ones((2187, 580)) for _ in range(8)]
        del live


import threading
for _ in range(3):                          # a fresh thread per run, as a fresh pool
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = threading.Thread(target=work); t.start(); t.join()
    thread_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f1
print(json.dumps({"ok": ok, "again": again, "faults": faults, "thread_faults": thread_faults}))
"""


def _probe(env_extra: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_panels_are_reused_without_page_faults():
    kept = _probe({})
    default = _probe({"ALPHAMINE_MALLOC": "default"})
    assert kept["ok"] and kept["again"]
    assert not default["ok"] and not default["again"]
    # 40 panels of 10 MB: by default each is mapped afresh (about 2,500 faults of 4 KiB, or
    # a few of 2 MiB); kept, the heap already holds them
    assert kept["faults"] < 200
    assert default["faults"] > 5 * max(kept["faults"], 20)
    # the third fresh thread's panels come from the main heap (one arena), not from sub-heaps
    # that the previous thread's arena unmapped when they emptied
    assert kept["thread_faults"] < 200
    assert default["thread_faults"] > 5 * max(kept["thread_faults"], 20)

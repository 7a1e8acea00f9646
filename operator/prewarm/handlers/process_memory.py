"""The process's garbage collector and heap, tuned for a fresh start over many
objects (docs/benchmarks.md, "Restart and memory").

A fresh operator lists every preset, claim, workspace and pod at once. When
kopf still indexed the workspaces and pods it kept each listed object's body,
patch and loggers alive until every index was complete: a heap of hundreds of
MiB, which the cyclic collector walked again and again while the listing
allocated (py-spy: create_task, call_soon and kopf's per-object constructors
on top, where collections run). Both are the operator's own watches now
(docs/decisions.md), as the claims are; kopf still lists the presets. Two
changes, from before that:

- `tune_gc()` at start: what the imports made is frozen (never scanned again)
  and the youngest generation is collected every 10,000 allocations instead
  of 700. Cyclic garbage lives a little longer; nothing else changes.
- `release_freed_heap()`: glibc's malloc_trim(0), giving back to the system
  the heap pages the listing freed (they stay in the process otherwise). A
  no-op where there is no glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

GEN0_THRESHOLD = 10_000
_libc: dict[str, ctypes.CDLL | None] = {}


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def _glibc() -> ctypes.CDLL | None:
    if "libc" not in _libc:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc["libc"] = libc if hasattr(libc, "malloc_trim") else None
        except OSError:
            _libc["libc"] = None
    return _libc["libc"]


def release_freed_heap() -> bool:
    """Give freed heap pages back to the system; False where that cannot be done."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True

"""The operator's GC settings and heap release (handlers/process_memory.py)."""

from __future__ import annotations

import gc
import platform

from prewarm.handlers import process_memory


def test_tune_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    try:
        process_memory.tune_gc()
        assert gc.get_threshold()[0] == process_memory.GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_freed_heap_is_given_back_where_the_c_library_is_glibc() -> None:
    """True exactly where malloc_trim exists (glibc: the image and CI's Debian),
    and harmless to repeat."""
    expected = platform.libc_ver()[0] == "glibc"
    assert process_memory.release_freed_heap() is expected
    assert process_memory.release_freed_heap() is expected

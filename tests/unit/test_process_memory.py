"""The operator's GC settings and heap release (handlers/process_memory.py)."""

from __future__ import annotations

import gc

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


def test_releasing_the_freed_heap_is_harmless_and_says_whether_it_could() -> None:
    assert process_memory.release_freed_heap() in (True, False)
    assert process_memory.release_freed_heap() in (True, False)  # again: still fine

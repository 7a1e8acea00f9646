from __future__ import annotations

from prometheus_client import generate_latest

from prewarm import metrics


def _exposed() -> str:
    return generate_latest().decode()


def test_a_presets_counters_exist_at_zero_from_its_first_pass_and_go_with_it() -> None:
    series = 'prewarm_claim_misses_total{namespace="team",preset="fresh"}'
    assert series not in _exposed()
    metrics.start_preset("team", "fresh")
    assert f"{series} 0.0" in _exposed()
    metrics.forget_preset("team", "fresh")
    assert series not in _exposed()

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from prewarm.settings import Settings


def test_durations_use_the_go_syntax_of_the_crds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_BACKOFF_MAX", "15m")
    monkeypatch.setenv("PREWARM_READINESS_TIMEOUT", "1h30m")
    settings = Settings()
    assert settings.backoff_max == timedelta(minutes=15)
    assert settings.readiness_timeout == timedelta(hours=1, minutes=30)


def test_a_bad_setting_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_FAILURE_LOOKBACK", "PT1H")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "failure_lookback" in str(error.value)


def test_namespaces_are_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREWARM_NAMESPACES", '["a", "b"]')
    assert Settings().namespaces == ["a", "b"]

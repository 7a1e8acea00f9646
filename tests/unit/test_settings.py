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


def test_the_reference_shows_defaults_the_operator_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/reference/settings.md once showed ISO-8601 defaults (PT15S) that the
    operator rejects: each documented default, set as is, must mean the default."""
    import re
    from pathlib import Path

    from prewarm.settings import Settings

    doc = (Path(__file__).resolve().parents[2] / "docs/reference/settings.md").read_text()
    doc = doc.split("## Operator settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `PREWARM_([A-Z_]+)` \| [^|]+ \| `([^`]*)` \|", doc, re.M)
    assert len(rows) >= 20
    defaults = Settings()
    for name, shown in rows:
        monkeypatch.setenv(f"PREWARM_{name}", "" if shown == '""' else shown)
        field = name.lower()
        assert getattr(Settings(), field) == getattr(defaults, field), name
        monkeypatch.delenv(f"PREWARM_{name}")


def test_watched_namespaces_are_names_not_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own pod watch asks for each namespace's pods by name; a
    kopf glob such as team-* would be a watch of no namespace at all."""
    from pydantic import ValidationError

    from prewarm.settings import Settings

    monkeypatch.setenv("PREWARM_NAMESPACES", '["team-a", "team-b"]')
    assert Settings().namespaces == ["team-a", "team-b"]
    monkeypatch.setenv("PREWARM_NAMESPACES", '["team-*"]')
    with pytest.raises(ValidationError, match="namespaces"):
        Settings()

"""prewarm.api imports no I/O library: planning and the agent may depend on it freely."""

from __future__ import annotations

from tests.unit.import_probe import loaded_after

FORBIDDEN = ("kubernetes", "kopf", "psycopg", "psycopg_pool", "aiohttp", "requests", "urllib3")


def test_importing_the_api_loads_no_io_library() -> None:
    assert loaded_after("prewarm.api, prewarm.api.reasons, prewarm.api.constants", FORBIDDEN) == []

"""The agent image follows the operator's own container unless set (issue 18)."""

from __future__ import annotations

from typing import Any

from prewarm.planning.agent_image import choose_agent_image, own_container_image
from prewarm.settings import DEFAULT_AGENT_IMAGE, Settings

FALLBACK = "ghcr.io/prewarm/prewarm:0.1.0"


def pod(*containers: tuple[str, str]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": n, "image": i} for n, i in containers]}}


def test_an_explicit_setting_wins_over_the_operator_pod() -> None:
    own = pod(("operator", "registry.local/prewarm:2"))
    assert choose_agent_image("mirror/prewarm:1", own, FALLBACK) == ("mirror/prewarm:1", "setting")


def test_unset_follows_the_image_of_the_operator_container() -> None:
    # `kubectl set image deployment/prewarm operator=...:2` leaves the chart's env
    # alone; the new pod's own spec is what tells the new image.
    own = pod(("cloud-sql-proxy", "gcr.io/proxy:1"), ("operator", "registry.local/prewarm:2"))
    assert choose_agent_image("", own, FALLBACK) == ("registry.local/prewarm:2", "operator pod")


def test_a_single_container_with_another_name_is_the_operator() -> None:
    assert own_container_image(pod(("manager", "x/prewarm:3")), "operator") == "x/prewarm:3"


def test_no_pod_or_an_ambiguous_pod_falls_back_to_the_default() -> None:
    assert choose_agent_image("", None, FALLBACK) == (FALLBACK, "default")
    assert choose_agent_image("", {}, FALLBACK) == (FALLBACK, "default")
    two = pod(("a", "x/a:1"), ("b", "x/b:1"))
    assert choose_agent_image("", two, FALLBACK) == (FALLBACK, "default")
    no_image = {"spec": {"containers": [{"name": "operator"}]}}
    assert choose_agent_image("", no_image, FALLBACK) == (FALLBACK, "default")


def test_the_setting_is_empty_by_default_so_the_pod_decides(monkeypatch: Any) -> None:
    monkeypatch.delenv("PREWARM_AGENT_IMAGE", raising=False)
    assert Settings().agent_image == ""
    assert DEFAULT_AGENT_IMAGE == FALLBACK


class FakeKube:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        self.asked.append((namespace, name))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def start_with(kube: FakeKube, monkeypatch: Any, explicit: str = "") -> str:
    import asyncio

    from prewarm.handlers.registrations import _with_agent_image

    monkeypatch.setenv("POD_NAME", "prewarm-abc")
    monkeypatch.setenv("POD_NAMESPACE", "prewarm-system")
    monkeypatch.setenv("PREWARM_AGENT_IMAGE", explicit)
    settings = asyncio.run(_with_agent_image(kube, Settings()))  # type: ignore[arg-type]
    return settings.agent_image


def test_start_reads_its_own_pod_unless_the_image_is_set(monkeypatch: Any) -> None:
    kube = FakeKube(pod(("operator", "registry.local/prewarm:2")))
    assert start_with(kube, monkeypatch) == "registry.local/prewarm:2"
    assert kube.asked == [("prewarm-system", "prewarm-abc")]
    kube = FakeKube(pod(("operator", "registry.local/prewarm:2")))
    assert start_with(kube, monkeypatch, explicit="mirror/prewarm:1") == "mirror/prewarm:1"
    assert kube.asked == []


def test_start_goes_on_with_the_default_when_its_pod_is_forbidden(monkeypatch: Any) -> None:
    from prewarm.k8s.core import ApiError

    kube = FakeKube(ApiError(403, "Forbidden", "pods is forbidden"))
    assert start_with(kube, monkeypatch) == DEFAULT_AGENT_IMAGE

"""What the operator loads at start and may not: libraries only some presets
need are imported when first used, so an idle operator does not carry them
(docs/benchmarks.md, "Restart and memory": the idle RSS goal)."""

from __future__ import annotations

from tests.unit.import_probe import loaded_after, run_fresh

# croniter: 3.5 MiB of RSS at import, needed only by presets with schedules.
NOT_AT_START = ("croniter",)
# The official client's synchronous half (its models, config loaders, requests,
# oauthlib): about 9 MiB; the operator uses only `kubernetes.aio`.
SYNC_CLIENT = ("kubernetes.client", "kubernetes.config", "kubernetes.watch", "requests", "oauthlib")
SKIP_SYNC = "from prewarm.k8s.lean_import import skip_sync_client; skip_sync_client()"


def test_starting_the_operator_does_not_load_what_only_schedules_need() -> None:
    assert loaded_after("prewarm.run, prewarm.handlers.registrations", NOT_AT_START) == []


def test_the_operator_as_the_cli_starts_it_loads_no_synchronous_client() -> None:
    started = "prewarm.run, prewarm.handlers.registrations, prewarm.agent.runner"
    assert loaded_after(started, SYNC_CLIENT, first=SKIP_SYNC) == []
    # Not vacuous: without the skip, kopf and the client's package load them.
    assert loaded_after(started, SYNC_CLIENT) == list(SYNC_CLIENT)


def test_the_asyncio_client_and_kopf_still_work_without_the_synchronous_half() -> None:
    probe = (
        "import kopf, kubernetes.aio.client as c\n"
        "assert c.ApiClient(c.Configuration()) and kopf.ConnectionInfo(server='https://x')\n"
        "from kopf._cogs.helpers import thirdparty\n"
        "assert thirdparty.V1ObjectMetaSync is None\n"
        "import kubernetes.aio.config\n"
        "print('ok')"
    )
    assert run_fresh(f"{SKIP_SYNC}\n{probe}").strip() == "ok"


def test_a_schedule_still_works_once_loaded_on_first_use() -> None:
    from datetime import UTC, datetime

    from prewarm.planning.schedule import Schedule, desired_instances, next_schedule_check

    now = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    office = Schedule(cron="* 9-17 * * 1-5", instances=10)
    assert desired_instances(3, [office], "Europe/Berlin", now).instances == 10
    assert next_schedule_check(3, [office], "UTC", now) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

"""The agent process: observe the generation (file + API), decide, act, repeat.

Three tasks share one `Observation`:
  * the podinfo poller reads the downward-API file every PREWARM_AGENT_POLL_SECONDS
    (slow to change, since the kubelet refreshes it on its sync period, but it
    needs no API);
  * the pod watcher lists then watches the agent's own pod (field selector
    metadata.name=<pod>), relisting after every disconnect (the fast path, and
    the "check on connect" that Coder added after losing events);
  * the worker asks `state.decide` what to do and does it.
Observations only ever raise the generation; the worker starts a hook only for
a generation greater than the recorded `done`, so a reconnect, a relist or a
restart that sees the same generation never re-runs anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prewarm.agent.hook import (
    HookResult,
    Redactor,
    default_credentials_root,
    hook_environment,
    remove_older_credentials,
    run_hook,
    write_credentials,
)
from prewarm.agent.logs import JsonLog
from prewarm.agent.podinfo import Claimed, claimed_from, parse_generation, read_annotations
from prewarm.agent.remote import INTERRUPTED, run_remote_hook, run_script
from prewarm.agent.settings import AgentSettings, SettingsError
from prewarm.agent.state import (
    AgentState,
    Exhausted,
    Idle,
    Report,
    RunHook,
    StateStore,
    decide,
)
from prewarm.api.agent_protocol import (
    HookFailure,
    failed_value,
    owner_secret_name,
    reinit_done_annotation,
    reinit_failed_annotation,
    reinit_output_annotation,
)
from prewarm.k8s.agent_api import AgentApi, ApiError

MAX_FAILED_REASON = 200
TRANSIENT_BACKOFF_MAX = 30.0


def _describe(error: BaseException) -> str:
    """A short, secret-free description of an API/transport error."""
    if isinstance(error, ApiError):
        return f"{error.status} {error.reason}".strip()
    return type(error).__name__


class Observation:
    """The highest generation seen by any source, with its owner."""

    def __init__(self, log: JsonLog) -> None:
        self.generation: int | None = None
        self.owner = ""
        self.parameters = ""  # of the highest generation, as the pod says (JSON)
        self.pod_reported: int | None = None
        self.changed = asyncio.Event()
        self._log = log
        self._by_source: dict[str, int] = {}

    def offer(self, claimed: Claimed | None, source: str) -> None:
        if claimed is None:
            return
        if self._by_source.get(source) != claimed.generation:
            self._by_source[source] = claimed.generation
            self._log.info("generation_observed", generation=claimed.generation, source=source)
        if self.generation is None or claimed.generation > self.generation:
            self.generation = claimed.generation
            self.owner = claimed.owner
            self.parameters = claimed.parameters
            self.changed.set()

    def set_pod_reported(self, value: int) -> None:
        if value != self.pod_reported:
            self.pod_reported = value
            self.changed.set()


class Agent:
    def __init__(
        self, settings: AgentSettings, api: AgentApi, log: JsonLog, environ: Mapping[str, str]
    ) -> None:
        self.settings = settings
        self.api = api
        self.log = log
        self.environ = dict(environ)
        self.store = StateStore(settings.state_dir, settings.container)
        self.state = AgentState()
        self.observation = Observation(log)
        self.credentials_root = settings.credentials_root or default_credentials_root()
        self._retry_at = 0.0
        self._retry_generation = 0
        self._transient_delay = 1.0
        self._announced_exhausted = 0
        self._final_reported = 0
        self.watching = asyncio.Event()
        """Set once a source is up: the pod listed (or, without the API, the file read)."""

    # --- sources ----------------------------------------------------------------------------

    async def poll_podinfo(self) -> None:
        missing_logged = False
        while True:
            annotations = await asyncio.to_thread(read_annotations, self.settings.podinfo)
            if annotations is None:
                if not missing_logged:
                    self.log.warning("podinfo_missing", path=str(self.settings.podinfo))
                    missing_logged = True
            else:
                missing_logged = False
                self.observation.offer(claimed_from(annotations), "file")
            if not self.settings.use_api:
                self.watching.set()
            await asyncio.sleep(self.settings.poll_seconds)

    def _see_pod(self, pod: Mapping[str, Any] | None) -> None:
        if pod is None:
            return
        annotations = dict((pod.get("metadata") or {}).get("annotations") or {})
        self.observation.offer(claimed_from(annotations), "api")
        reported = parse_generation(
            annotations.get(reinit_done_annotation(self.settings.container))
        )
        self.observation.set_pod_reported(reported or 0)

    async def watch_pod(self) -> None:
        delay = 1.0
        while True:
            try:
                pod, resource_version = await self.api.list_pod()
                if pod is None:
                    self.log.warning("pod_not_found")
                self._see_pod(pod)
                self.watching.set()
                async for kind, obj in self.api.watch_pod(resource_version):
                    delay = 1.0
                    if kind in ("ADDED", "MODIFIED"):
                        self._see_pod(obj)
                    elif kind == "DELETED":
                        self.log.warning("pod_deleted")
                # The server closed the watch: relist (cheap, and idempotent).
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.log.warning("watch_error", error=_describe(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, TRANSIENT_BACKOFF_MAX)

    # --- worker ---------------------------------------------------------------------------------

    def _save(self, state: AgentState) -> None:
        self.store.save(state)
        self.state = state

    async def _checkpoint(self, name: str) -> None:
        if self.settings.checkpoint == name:
            self.log.info("checkpoint", name=name)
            await asyncio.Event().wait()  # test only: wait here to be killed

    async def _wait_change(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.observation.changed.wait()

    async def _transient_failure(self, event: str, error: BaseException, **fields: Any) -> None:
        delay = self._transient_delay
        self.log.warning(event, error=_describe(error), retry_in=delay, **fields)
        self._transient_delay = min(delay * 2, TRANSIENT_BACKOFF_MAX)
        await self._wait_change(delay)

    async def work(self) -> None:
        while True:
            self.observation.changed.clear()
            obs = self.observation
            action = decide(
                self.state,
                obs.generation,
                obs.owner,
                pod_reported=obs.pod_reported,
                max_attempts=self.settings.max_attempts,
            )
            if isinstance(action, Idle):
                await self._wait_change(None)
            elif isinstance(action, Report):
                await self.report(action.generation)
            elif isinstance(action, Exhausted):
                await self.exhausted(action)
            else:
                now = time.monotonic()
                if action.generation == self._retry_generation and now < self._retry_at:
                    await self._wait_change(self._retry_at - now)
                    continue
                await self.reinit(action, obs.parameters)

    async def reinit(self, action: RunHook, parameters: str = "") -> None:
        g = action.generation
        try:
            secrets = await self.api.read_secret_data(owner_secret_name(self.settings.pod_name))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._transient_failure("owner_secret_unreadable", error, generation=g)
            return
        self._transient_delay = 1.0
        target = self.settings.exec_container
        if not target:
            credentials = write_credentials(self.credentials_root, g, secrets, parameters)
        self._save(self.state.started(g))
        self.log.info(
            "hook_started",
            generation=g,
            owner=action.owner,
            attempt=action.attempt,
            resumed=action.resumed,
            credential_files=len(secrets),
            **({"in_container": target} if target else {}),
        )
        started = time.monotonic()
        if target:
            result = await self._run_in_container(target, action, secrets, parameters)
        else:
            env = hook_environment(
                self.environ,
                owner=action.owner,
                generation=g,
                credentials_dir=credentials,
                resumed=action.resumed,
                attempt=action.attempt,
            )
            result = await run_hook(
                self.settings.on_claim,
                env,
                Redactor(secrets),
                self.log,
                self.settings.hook_timeout_seconds,
            )
        seconds = round(time.monotonic() - started, 3)
        await self._checkpoint("after-hook")
        if result.ok:
            self._save(self.state.completed(g, action.owner))
            if not target:  # in a target container, the next generation's script does it
                remove_older_credentials(self.credentials_root, keep=g)
            self.log.info("hook_succeeded", generation=g, seconds=seconds)
            await self._checkpoint("after-record")
            return
        await self._hook_failed(action, result, seconds)

    async def _run_in_container(
        self, target: str, action: RunHook, secrets: Mapping[str, bytes], parameters: str
    ) -> HookResult:
        """The hook in the workspace's container `target`, through exec (agent/remote.py)."""
        root = f"{self.settings.reinit_dir.rstrip('/')}/{target}"
        script = run_script(
            root=root,
            generation=action.generation,
            owner=action.owner,
            secrets=secrets,
            parameters=parameters,
            attempt=action.attempt,
            resumed=action.resumed,
        )
        return await run_remote_hook(
            self.api,
            target,
            self.settings.on_claim,
            script,
            root,
            Redactor(secrets),
            self.log,
            self.settings.hook_timeout_seconds,
        )

    async def _hook_failed(self, action: RunHook, result: HookResult, seconds: float) -> None:
        g = action.generation
        reason = result.reason[:MAX_FAILED_REASON]
        # A run cut off mid-way (the exec stream ended without any status: the
        # connection or the kubelet went away) is retried as resumed. (A target
        # container that restarts is reported by the kubelet: exit status 137.)
        self._save(self.state.failed(g, reason, interrupted=reason == INTERRUPTED))
        self.log.error(
            "hook_failed",
            generation=g,
            attempt=action.attempt,
            max_attempts=self.settings.max_attempts,
            reason=reason,
            seconds=seconds,
        )
        final = self.state.attempts >= self.settings.max_attempts
        failure = HookFailure(
            g, action.attempt, self.settings.max_attempts, result.timed_out, result.output
        )
        if await self._report_failed(g, reason, failure, final) and final:
            self._final_reported = g
        if not final:
            delay = self.settings.backoff_seconds * 2 ** (self.state.attempts - 1)
            self._retry_generation = g
            self._retry_at = time.monotonic() + delay
            self.log.info("hook_retry_scheduled", generation=g, retry_in=delay)

    async def _report_failed(
        self, g: int, reason: str, failure: HookFailure | None, final: bool
    ) -> bool:
        """One patch: the short reason (with "gave up" when final) and, when known,
        the run's details with the redacted tail of its output. True once patched."""
        container = self.settings.container
        patch = {
            reinit_failed_annotation(container): failed_value(
                g, reason, self.state.attempts if final else 0
            )
        }
        if failure is not None:
            patch[reinit_output_annotation(container)] = failure.to_annotation()
        try:
            await self.api.patch_pod_annotations(patch)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Best effort: the failure is in the log and the state; retried on the next failure.
            self.log.warning("report_failed_error", generation=g, error=_describe(error))
            return False
        return True

    async def exhausted(self, action: Exhausted) -> None:
        if self._announced_exhausted != action.generation:
            self._announced_exhausted = action.generation
            self.log.error(
                "hook_gave_up",
                generation=action.generation,
                attempts=self.state.attempts,
                reason=action.reason,
            )
            if self._final_reported != action.generation:
                # After a restart (or a failed patch): the details of the last run
                # are gone with the process; the reason says it gave up.
                await self._report_failed(action.generation, action.reason, None, True)
        await self._wait_change(None)

    async def report(self, g: int) -> None:
        patch: dict[str, str | None] = {reinit_done_annotation(self.settings.container): str(g)}
        if self.state.attempt_generation <= g:
            patch[reinit_failed_annotation(self.settings.container)] = None
            patch[reinit_output_annotation(self.settings.container)] = None
        try:
            await self.api.patch_pod_annotations(patch)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._transient_failure("report_error", error, generation=g)
            return
        self._transient_delay = 1.0
        self._save(self.state.report_recorded(g))
        self.observation.pod_reported = max(self.observation.pod_reported or 0, g)
        self.log.info("reinit_reported", generation=g)
        await self._checkpoint("after-report")

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> int:
        self.state = self.store.load()
        self.log.info(
            "agent_started",
            done=self.state.done,
            reported=self.state.reported,
            interrupted=self.state.running,
            use_api=self.settings.use_api,
        )
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(self.poll_podinfo(), name="podinfo")]
        if self.settings.use_api:
            tasks.append(asyncio.create_task(self.watch_pod(), name="watch"))
        worker = asyncio.create_task(self.work(), name="worker")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait([worker, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, stopper, *tasks):
                task.cancel()
            await asyncio.gather(worker, stopper, *tasks, return_exceptions=True)
        for task in (worker, *tasks):
            if task.done() and not task.cancelled() and task.exception() is not None:
                error = task.exception()
                assert error is not None
                self.log.error("agent_failed", task=task.get_name(), error=repr(error)[:500])
                return 1
        self.log.info("agent_stopped")
        return 0


def _log_for(settings: AgentSettings) -> JsonLog:
    # The pod is named after its workspace (planning.render.render_pod).
    return JsonLog(
        namespace=settings.namespace,
        workspace=settings.pod_name,
        pod=settings.pod_name,
        container=settings.container,
    )


async def _main(settings: AgentSettings, log: JsonLog, environ: Mapping[str, str]) -> int:
    targets = settings.for_targets()
    try:
        api = await AgentApi.connect(
            settings.namespace,
            settings.pod_name,
            settings.kubeconfig,
            settings.in_cluster,
            pool_size=2 + 2 * len(targets),
        )
    except Exception as error:
        log.error("api_config_error", error=_describe(error))
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # One agent per target container: its own state, watch and reports. When
        # one of them fails, stop the others (the container restarts as a whole).
        agents = [Agent(t, api, _log_for(t), environ) for t in targets]
        ready = Path(settings.ready_file) if settings.ready_file else None
        if ready is not None:
            # A restarted container starts unready (the file is on its emptyDir).
            await asyncio.to_thread(ready.unlink, missing_ok=True)
        runs = [asyncio.create_task(a.run(stop)) for a in agents]
        marker = asyncio.create_task(_mark_ready(agents, ready, log))
        for finished in asyncio.as_completed(runs):
            if await finished:
                stop.set()
        marker.cancel()
        return max(run.result() for run in runs)
    finally:
        await api.close()


async def _mark_ready(agents: list[Agent], ready: Path | None, log: JsonLog) -> None:
    """The startup probe's file, once every agent has its source up."""
    await asyncio.gather(*(a.watching.wait() for a in agents))
    if ready is not None:
        await asyncio.to_thread(ready.touch)
    log.info("agent_ready", agents=len(agents))


def run_agent(environ: Mapping[str, str] | None = None) -> int:
    """`prewarm agent`: run until SIGTERM/SIGINT; the exit code of the process."""
    env = dict(os.environ if environ is None else environ)
    try:
        settings = AgentSettings.from_env(env)
    except SettingsError as error:
        JsonLog()("error", "settings_error", error=str(error))
        return 2
    log = _log_for(settings)
    try:
        return asyncio.run(_main(settings, log, env))
    except (OSError, ValueError) as error:
        log.error("agent_failed", error=repr(error)[:500])
        return 1

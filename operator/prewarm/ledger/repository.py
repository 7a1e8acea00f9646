"""The ledger: an async, typed facade over PostgreSQL for the operator.

Every write is an idempotent upsert keyed by Kubernetes UIDs (see queries.py
for how replays and out-of-order events merge). Every `at`/`now` is the
caller's time, timezone-aware, so tests and replays are deterministic.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import AsyncRowFactory, DictRow, class_row, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from prewarm.api.claim import ClaimSource
from prewarm.api.preset import PrebuildStatus
from prewarm.ledger import queries
from prewarm.ledger.migrate import migrate_async
from prewarm.ledger.models import (
    BuildRecord,
    ClaimLossRecord,
    ClaimRecord,
    CreateRefusal,
    DemandRecord,
    FailureState,
    LastFailure,
    PresetRecord,
    ReplayedBuild,
)

T = TypeVar("T")
Params = Mapping[str, Any]

# Waiting longer for a connection than this means PostgreSQL is not answering:
# say so, so the operator can degrade (pause creates) instead of hanging.
CONNECTION_TIMEOUT_S = 3.0
# Demand mode's build-time quantiles come from this many latest Ready builds.
DEMAND_BUILDS = 50


class LedgerUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (down, restarting, or the pool is exhausted)."""


async def apply_migrations(dsn: str, connect_timeout_s: float = CONNECTION_TIMEOUT_S) -> list[str]:
    """The pending migrations applied (file names); PostgreSQL that cannot be
    reached raises LedgerUnavailable (refused at once, silent after the timeout),
    a disagreement with the database's migrations MigrationError."""
    try:
        return await migrate_async(dsn, connect_timeout_s=connect_timeout_s)
    except psycopg.OperationalError as error:
        raise LedgerUnavailable(_first_line(error)) from error


@contextlib.asynccontextmanager
async def _unavailable_as_error() -> AsyncIterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as error:
        raise LedgerUnavailable(_first_line(error)) from error


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)


def _new_pool(dsn: str, min_size: int, max_size: int) -> AsyncConnectionPool[AsyncConnection[Any]]:
    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=CONNECTION_TIMEOUT_S,
        # Single statements only, so autocommit: no transaction is ever left idle.
        # UTC sessions: timestamps read back compare equal to what was written.
        kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
    )


class Ledger:
    """History of every prebuild attempt and claim, and the failure policy computed from it."""

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[Any]] | None, dsn: str = ""
    ) -> None:
        self._open_pool = pool
        self._dsn = dsn

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float | None = None,
    ) -> Ledger:
        """Open a pool to `dsn` and wait until one connection works.

        With `connect_timeout_s` (the CLI's reads), one plain connection is
        tried first: PostgreSQL down raises LedgerUnavailable at once (refused)
        or after that many seconds (no answer), not after the pool's 30 s of
        retries.
        """
        if connect_timeout_s is not None:
            async with _unavailable_as_error():
                probe = await AsyncConnection.connect(
                    dsn, connect_timeout=max(1, round(connect_timeout_s))
                )
                await probe.close()
        pool = _new_pool(dsn, min_size, max_size)
        await pool.open(wait=True, timeout=connect_timeout_s or 30.0)
        return cls(pool, dsn)

    @classmethod
    def deferred(cls, dsn: str) -> Ledger:
        """A ledger for `dsn` that is not open yet: every query raises
        LedgerUnavailable until `open()` succeeds, so an operator can start
        (degraded) while PostgreSQL is down."""
        return cls(None, dsn)

    @property
    def is_open(self) -> bool:
        return self._open_pool is not None

    async def open(self, *, max_size: int = 10) -> list[str]:
        """Apply pending migrations, then open the pool; the migrations applied.

        Raises LedgerUnavailable while PostgreSQL cannot be reached (call it
        again later), MigrationError if the database's migrations disagree
        with ours (no retry helps).
        """
        if self._open_pool is not None:
            return []
        applied = await apply_migrations(self._dsn)
        pool = _new_pool(self._dsn, 1, max_size)
        try:
            await pool.open(wait=True, timeout=CONNECTION_TIMEOUT_S)
        except PoolTimeout as error:
            await pool.close()
            raise LedgerUnavailable(_first_line(error)) from error
        self._open_pool = pool
        return applied

    @property
    def _pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._open_pool is None:
            raise LedgerUnavailable("not connected yet: PostgreSQL was unreachable at start")
        return self._open_pool

    async def close(self) -> None:
        if self._open_pool is not None:
            await self._open_pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- presets -----------------------------------------------------------------------

    async def upsert_preset(
        self,
        uid: str,
        namespace: str,
        name: str,
        template_hash: str,
        generation: int = 0,
        hard_limit: int | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Record the preset's current spec and hard limit; True if anything changed.

        The status column follows (a trigger derives it from the builds of the
        new hash and limit). With `generation` (metadata.generation) an older
        replay cannot undo a newer spec. A new hash (even one the preset had
        before) starts a new hard-limit episode at `at` (default: now).
        """
        params = {
            "uid": uid,
            "namespace": namespace,
            "name": name,
            "template_hash": template_hash,
            "generation": generation,
            "hard_limit": hard_limit,
            "at": None if at is None else _aware(at),
        }
        return await self._changed(queries.UPSERT_PRESET, params)

    async def record_retry(self, uid: str, retry_token: str, at: datetime) -> bool:
        """A prewarm.dev/retry value: starts a new failure epoch at `at` if the token is new.

        True if it reset. The same token again (a restart's replay) changes nothing.
        """
        params = {"uid": uid, "token": retry_token, "at": _aware(at)}
        return await self._changed(queries.RECORD_RETRY, params)

    async def set_preset_status(self, uid: str, status: PrebuildStatus) -> bool:
        """Store the preset's prebuild status; True on a transition.

        Builds, retries and new templates keep the column current by themselves
        (migration 0006); this is for a verdict without a build: a dry-run
        rejection of the template."""
        params = {"uid": uid, "status": _SQL_STATUS[PrebuildStatus(status)]}
        return await self._changed(queries.SET_PRESET_STATUS, params)

    async def preset(self, uid: str) -> PresetRecord | None:
        row = await self._one(queries.GET_PRESET, {"uid": uid}, dict_row)
        if row is None:
            return None
        return PresetRecord(**{**row, "status": _STATUS_OF_SQL[row["status"]]})

    # -- builds ------------------------------------------------------------------------

    async def record_build_started(
        self,
        preset_uid: str,
        workspace_uid: str,
        workspace_name: str,
        template_hash: str,
        at: datetime,
        *,
        namespace: str = "",
        preset_name: str = "",
    ) -> None:
        """A prebuild attempt began (the PrebuiltWorkspace was created).

        A preset the ledger does not know yet (a claim's cold start before any
        pass of the preset) is recorded from what is known here (`namespace`,
        `preset_name`, the hash); the preset's pass completes the row."""
        params = {
            "preset_uid": preset_uid,
            "workspace_uid": workspace_uid,
            "workspace_name": workspace_name,
            "template_hash": template_hash,
            "at": _aware(at),
            "namespace": namespace,
            "preset_name": preset_name,
        }
        await self._execute(queries.RECORD_BUILD_STARTED, params)

    async def record_build_succeeded(self, workspace_uid: str, at: datetime) -> None:
        await self._execute(
            queries.RECORD_BUILD_SUCCEEDED, {"workspace_uid": workspace_uid, "at": _aware(at)}
        )

    async def record_build_failed(
        self,
        workspace_uid: str,
        reason: str,
        message: str,
        at: datetime,
        validation_error: bool = False,
    ) -> None:
        params = {
            "workspace_uid": workspace_uid,
            "reason": reason,
            "message": message,
            "at": _aware(at),
            "validation_error": validation_error,
        }
        await self._execute(queries.RECORD_BUILD_FAILED, params)

    async def record_build_disrupted(
        self, workspace_uid: str, reason: str, message: str, at: datetime
    ) -> None:
        """Lost to its infrastructure: recorded, never counted as a failure."""
        params = {
            "workspace_uid": workspace_uid,
            "reason": reason,
            "message": message,
            "at": _aware(at),
        }
        await self._execute(queries.RECORD_BUILD_DISRUPTED, params)

    async def record_create_refused(
        self, preset_uid: str, status: int, message: str, at: datetime
    ) -> None:
        """The API server refused a PrebuiltWorkspace of the preset: no build started."""
        params = {"preset_uid": preset_uid, "status": status, "message": message, "at": _aware(at)}
        await self._execute(queries.RECORD_CREATE_REFUSED, params)

    async def create_refusals(self, preset_uid: str, limit: int = 20) -> list[CreateRefusal]:
        """The latest refused creates of a preset, newest first."""
        params = {"preset_uid": preset_uid, "limit": limit}
        return await self._all(queries.CREATE_REFUSALS, params, class_row(CreateRefusal))

    async def replay_build(self, build: ReplayedBuild) -> None:
        """What a workspace's status says of its build, written where the ledger
        has nothing yet: recorded history (times, reason, message) never changes."""
        failed = build.failed_at is not None
        params = {
            "workspace_uid": build.workspace_uid,
            "preset_uid": build.preset_uid,
            "workspace_name": build.workspace_name,
            "template_hash": build.template_hash,
            "started_at": _aware(build.started_at),
            "ready_at": _aware(build.ready_at) if build.ready_at else None,
            "failed_at": _aware(build.failed_at) if build.failed_at else None,
            "reason": build.failure_reason if failed else None,
            "message": build.failure_message if failed else None,
            "validation_error": failed and build.validation_error,
            "disrupted_at": _aware(build.disrupted_at) if build.disrupted_at else None,
            "disruption_reason": build.disruption_reason if build.disrupted_at else None,
            "disruption_message": build.disruption_message if build.disrupted_at else None,
        }
        await self._execute(queries.REPLAY_BUILD, params)

    # -- failure policy ----------------------------------------------------------------

    async def failure_state(
        self,
        preset_uid: str,
        template_hash: str,
        *,
        hard_limit: int,
        backoff_base: timedelta,
        backoff_max: timedelta,
        lookback: timedelta,
        now: datetime,
    ) -> FailureState:
        """Consecutive failures, hard limit, validation failure and backoff of one preset."""
        params = {
            "preset_uid": preset_uid,
            "template_hash": template_hash,
            "hard_limit": hard_limit,
            **_backoff_params(backoff_base, backoff_max, lookback, now),
        }
        row = await self._one(queries.FAILURE_STATE, params, dict_row)
        if row is None:
            return FailureState.clean(preset_uid, template_hash, hard_limit)
        return _failure_state(row)

    async def demand(
        self,
        preset_uid: str,
        template_hash: str,
        *,
        window: timedelta,
        now: datetime,
        builds: int = DEMAND_BUILDS,
    ) -> DemandRecord:
        """Claims of one preset requested in (now - window, now] (and in the
        window's last quarter), its latest Ready builds' create-to-Ready
        quantiles for `template_hash`, and how long the slots its latest warm
        claims took stayed empty: one query (queries.DEMAND)."""
        at = _aware(now)
        params = {
            "preset_uid": preset_uid,
            "template_hash": template_hash,
            "since": at - window,
            "recent_since": at - window / 4,
            "now": at,
            "builds": builds,
        }
        row = await self._one(queries.DEMAND, params, dict_row)
        if row is None:  # the aggregate always returns a row; for the type checker
            return DemandRecord(0, 0, 0, 0, None, None)
        return DemandRecord(
            claims=int(row["claims"]),
            recent=int(row["recent"]),
            cold=int(row["cold"]),
            builds=int(row["builds"]),
            build_p50_s=row["p50"],
            build_p90_s=row["p90"],
            slots=int(row["slots"]),
            slot_p90_s=row["slot_p90"],
        )

    async def mark_hard_limit_notified(
        self,
        preset_uid: str,
        template_hash: str,
        reset_epoch: datetime | None,
        at: datetime | None = None,
    ) -> bool:
        """True for exactly one caller per (preset, hash, epoch), across restarts and replicas.

        reset_epoch is FailureState.episode_start: the later of the last retry
        and the preset's switch to this hash (None before either was recorded).
        """
        params = {
            "preset_uid": preset_uid,
            "template_hash": template_hash,
            "reset_epoch": None if reset_epoch is None else _aware(reset_epoch),
            "at": None if at is None else _aware(at),
        }
        return await self._changed(queries.MARK_HARD_LIMIT_NOTIFIED, params)

    # -- claims ------------------------------------------------------------------------

    async def record_claim_requested(
        self,
        claim_uid: str,
        preset_uid: str,
        namespace: str,
        claim_name: str,
        owner: str,
        at: datetime,
    ) -> None:
        params = {
            "claim_uid": claim_uid,
            "preset_uid": preset_uid,
            "namespace": namespace,
            "claim_name": claim_name,
            "owner": owner,
            "at": _aware(at),
        }
        await self._execute(queries.RECORD_CLAIM_REQUESTED, params)

    async def record_claim_bound(
        self,
        claim_uid: str,
        workspace_uid: str,
        workspace_name: str,
        owner: str,
        source: ClaimSource,
        at: datetime,
    ) -> None:
        """The claim was bound. A workspace binds at most one claim (a unique
        index): binding another claim to it raises IntegrityError. An unknown
        workspace uid ("") is stored as NULL."""
        params = {
            "claim_uid": claim_uid,
            "workspace_uid": workspace_uid or None,
            "workspace_name": workspace_name,
            "owner": owner,
            "source": ClaimSource(source).value,
            "at": _aware(at),
        }
        await self._execute(queries.RECORD_CLAIM_BOUND, params)

    async def record_claim_reinitialized(self, claim_uid: str, at: datetime) -> None:
        await self._execute(
            queries.RECORD_CLAIM_REINITIALIZED, {"claim_uid": claim_uid, "at": _aware(at)}
        )

    async def record_claim_failed(self, claim_uid: str, reason: str, at: datetime) -> None:
        params = {"claim_uid": claim_uid, "reason": reason, "at": _aware(at)}
        await self._execute(queries.RECORD_CLAIM_FAILED, params)

    async def record_claim_rebound(
        self,
        claim_uid: str,
        workspace_uid: str,
        workspace_name: str,
        source: ClaimSource,
        at: datetime,
    ) -> None:
        """After a lost workspace the claim was bound again: the latest rebind
        names its current workspace; bound_at keeps the first binding."""
        params = {
            "claim_uid": claim_uid,
            "workspace_uid": workspace_uid or None,
            "workspace_name": workspace_name,
            "source": ClaimSource(source).value,
            "at": _aware(at),
        }
        await self._execute(queries.RECORD_CLAIM_REBOUND, params)

    async def record_claim_workspace_lost(
        self,
        claim_uid: str,
        workspace_uid: str,
        workspace_name: str,
        reason: str,
        policy: str,
        at: datetime,
    ) -> None:
        """A Bound claim's workspace (or its pod) was deleted; `policy` is what
        the claim did about it (Rebind or Fail). Replays keep the first time."""
        params = {
            "claim_uid": claim_uid,
            "workspace_uid": workspace_uid or None,
            "workspace_name": workspace_name,
            "reason": reason,
            "policy": policy,
            "at": _aware(at),
        }
        await self._execute(queries.RECORD_CLAIM_WORKSPACE_LOST, params)

    async def record_claim_expired(self, claim_uid: str, at: datetime) -> None:
        """The claim's lifetime (or shutdownAt) ended and its workspace was deleted."""
        await self._execute(
            queries.RECORD_CLAIM_EXPIRED, {"claim_uid": claim_uid, "at": _aware(at)}
        )

    async def claim_losses(self, claim_uid: str) -> list[ClaimLossRecord]:
        """The workspaces a claim lost, oldest first."""
        return await self._all(
            queries.CLAIM_LOSSES, {"claim_uid": claim_uid}, class_row(ClaimLossRecord)
        )

    async def claim(self, claim_uid: str) -> ClaimRecord | None:
        return await self._one(queries.GET_CLAIM, {"claim_uid": claim_uid}, class_row(ClaimRecord))

    async def recent_claims(self, limit: int = 20) -> list[ClaimRecord]:
        return await self._all(queries.RECENT_CLAIMS, {"limit": limit}, class_row(ClaimRecord))

    # -- reporting ---------------------------------------------------------------------

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[BuildRecord]:
        """The latest builds of a preset (any hash, any epoch), newest first."""
        params = {"namespace": namespace, "name": name, "limit": limit}
        return await self._all(queries.HISTORY, params, class_row(BuildRecord))

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """The statements run inside share one connection in pipeline mode: sent
        without waiting for each answer, and answered at the end (the writer,
        ledger/writer.py, batches the writes that queued up meanwhile). A failed
        statement raises here, at the latest on leaving; PostgreSQL runs those
        of one pipeline as one implicit transaction, so then none is written."""
        async with _unavailable_as_error(), self._pool.connection() as conn, conn.pipeline():
            token = _batch_connection.set(conn)
            try:
                yield
            finally:
                _batch_connection.reset(token)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The batch's connection inside `batch()`, else one from the pool."""
        batched = _batch_connection.get()
        if batched is not None:
            yield batched
            return
        async with _unavailable_as_error(), self._pool.connection() as conn:
            yield conn

    async def _execute(self, query: str, params: Params) -> None:
        async with self._connection() as conn:
            await conn.execute(query, params)

    async def _changed(self, query: str, params: Params) -> bool:
        """Run a statement with RETURNING; True if it touched a row."""
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone() is not None

    async def _one(self, query: str, params: Params, rows: AsyncRowFactory[T]) -> T | None:
        async with self._connection() as conn, conn.cursor(row_factory=rows) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchone()

    async def _all(self, query: str, params: Params, rows: AsyncRowFactory[T]) -> list[T]:
        async with self._connection() as conn, conn.cursor(row_factory=rows) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchall()


# The connection of the writer's current batch (Ledger.batch), in its task only.
_batch_connection: contextvars.ContextVar[AsyncConnection[Any] | None] = contextvars.ContextVar(
    "prewarm_ledger_batch", default=None
)


# The SQL enum prebuild_status spells the API's PrebuildStatus in snake case.
_SQL_STATUS: dict[PrebuildStatus, str] = {
    PrebuildStatus.NORMAL: "normal",
    PrebuildStatus.HARD_LIMITED: "hard_limited",
    PrebuildStatus.VALIDATION_FAILED: "validation_failed",
}
_STATUS_OF_SQL = {sql: status for status, sql in _SQL_STATUS.items()}


def _aware(moment: datetime) -> datetime:
    # A naive datetime would be read in the session's time zone: silently wrong.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got {moment!r}")
    return moment


def _backoff_params(
    backoff_base: timedelta, backoff_max: timedelta, lookback: timedelta, now: datetime
) -> dict[str, Any]:
    return {
        "backoff_base_s": backoff_base.total_seconds(),
        "backoff_max_s": backoff_max.total_seconds(),
        "lookback_start": _aware(now) - lookback,
        "now": now,
    }


def _failure_state(row: DictRow) -> FailureState:
    last_failure = None
    if row["last_failure_at"] is not None:
        last_failure = LastFailure(
            reason=row["last_failure_reason"],
            message=row["last_failure_message"],
            at=row["last_failure_at"],
        )
    return FailureState(
        preset_uid=row["preset_uid"],
        template_hash=row["template_hash"],
        hard_limit=row["hard_limit"],
        reset_at=row["reset_at"],
        template_since=row["template_since"],
        consecutive_failures=row["consecutive_failures"],
        recent_failures=row["recent_failures"],
        hard_limited=row["hard_limited"],
        validation_failed=row["validation_failed"],
        backoff_until=row["backoff_until"],
        last_failure=last_failure,
    )

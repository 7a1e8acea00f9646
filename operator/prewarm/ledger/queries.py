"""Every SQL statement of the ledger, in one place.

Writes are upserts keyed by Kubernetes UIDs and merge rather than overwrite:
first-seen identity (COALESCE), earliest timestamp (LEAST), and the details of
the earliest event win. So replaying any write, twice or out of order, leaves
the same row. Timestamps come from the caller (the event's time), never from
now(), which would make a replay differ from the original.

Failure-policy "scope": builds of one preset with the template hash in
question, started at or after the preset's reset_at (a retry annotation
starts a new epoch). The fragments below are composed into the final queries
at import time so the scope is written exactly once.
"""

from __future__ import annotations

# -- migrations ------------------------------------------------------------------------

# "prewarm1" in ASCII: an arbitrary but fixed key, distinct from any other lock of ours.
MIGRATION_LOCK_KEY = 0x7072657761726D31

MIGRATION_LOCK = "SELECT pg_advisory_lock(%(key)s)"
MIGRATION_UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"

CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    filename   text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

APPLIED_MIGRATIONS = "SELECT version, checksum FROM schema_migrations ORDER BY version"

RECORD_MIGRATION = """
INSERT INTO schema_migrations (version, filename, checksum)
VALUES (%(version)s, %(filename)s, %(checksum)s)
"""

# -- presets ---------------------------------------------------------------------------

# A new template hash is a new chance: the stored status belonged to the old spec.
# generation guards against an older replay undoing a newer spec.
# template_since is when the preset switched to its current hash (the start
# of a hard-limit episode with the reset): kept while the hash stays, moved
# when it changes, even back to a hash the preset had before.
UPSERT_PRESET = """
INSERT INTO presets (uid, namespace, name, template_hash, generation, hard_limit, template_since)
VALUES (%(uid)s, %(namespace)s, %(name)s, %(template_hash)s, %(generation)s, %(hard_limit)s,
        COALESCE(%(at)s::timestamptz, now()))
ON CONFLICT (uid) DO UPDATE SET
    namespace = EXCLUDED.namespace,
    name = EXCLUDED.name,
    template_hash = EXCLUDED.template_hash,
    generation = EXCLUDED.generation,
    hard_limit = COALESCE(EXCLUDED.hard_limit, presets.hard_limit),
    status = CASE
        WHEN presets.template_hash = EXCLUDED.template_hash THEN presets.status
        ELSE 'normal'
    END,
    template_since = CASE
        WHEN presets.template_hash = EXCLUDED.template_hash THEN presets.template_since
        ELSE EXCLUDED.template_since
    END,
    updated_at = now()
WHERE EXCLUDED.generation >= presets.generation
  AND (presets.namespace, presets.name, presets.template_hash, presets.generation,
       presets.hard_limit)
      IS DISTINCT FROM
      (EXCLUDED.namespace, EXCLUDED.name, EXCLUDED.template_hash, EXCLUDED.generation,
       COALESCE(EXCLUDED.hard_limit, presets.hard_limit))
RETURNING uid
"""

# Only a token not seen before resets, and never backwards in time: a restart
# replaying the same annotation, or a replay of an older token, is a no-op.
RECORD_RETRY = """
UPDATE presets SET
    retry_token = %(token)s,
    reset_at = %(at)s,
    status = 'normal',
    updated_at = now()
WHERE uid = %(uid)s
  AND retry_token IS DISTINCT FROM %(token)s
  AND (reset_at IS NULL OR reset_at < %(at)s)
RETURNING uid
"""

SET_PRESET_STATUS = """
UPDATE presets SET status = %(status)s::prebuild_status, updated_at = now()
WHERE uid = %(uid)s AND status IS DISTINCT FROM %(status)s::prebuild_status
RETURNING uid
"""

GET_PRESET = """
SELECT uid, namespace, name, template_hash, generation, retry_token, reset_at,
       status::text AS status, created_at, updated_at, template_since
FROM presets WHERE uid = %(uid)s
"""

# -- builds ----------------------------------------------------------------------------

# A claim's cold start can record its build before any preset pass recorded
# the preset (both queue behind an outage, or the claim's worker is first
# after a start): the preset's row is created from what the build knows, and
# the preset's pass completes it. Without it the foreign key refuses the
# build, and a cold build that failed would be missing from the failure policy.
RECORD_BUILD_STARTED = """
WITH preset AS (
    INSERT INTO presets (uid, namespace, name, template_hash, template_since)
    SELECT %(preset_uid)s, %(namespace)s, %(preset_name)s, %(template_hash)s, %(at)s
    WHERE %(preset_uid)s <> ''
    ON CONFLICT (uid) DO NOTHING
)
INSERT INTO builds (workspace_uid, preset_uid, workspace_name, template_hash, started_at)
VALUES (%(workspace_uid)s, %(preset_uid)s, %(workspace_name)s, %(template_hash)s, %(at)s)
ON CONFLICT (workspace_uid) DO UPDATE SET
    preset_uid = COALESCE(builds.preset_uid, EXCLUDED.preset_uid),
    workspace_name = COALESCE(builds.workspace_name, EXCLUDED.workspace_name),
    template_hash = COALESCE(builds.template_hash, EXCLUDED.template_hash),
    started_at = LEAST(builds.started_at, EXCLUDED.started_at)
"""

RECORD_BUILD_SUCCEEDED = """
INSERT INTO builds (workspace_uid, ready_at)
VALUES (%(workspace_uid)s, %(at)s)
ON CONFLICT (workspace_uid) DO UPDATE SET
    ready_at = LEAST(builds.ready_at, EXCLUDED.ready_at)
"""

# The details of the earliest failure stay; a later report of the same attempt
# (e.g. the pod's deletion after a crash loop) must not overwrite the cause.
RECORD_BUILD_FAILED = """
INSERT INTO builds (workspace_uid, failed_at, failure_reason, failure_message, validation_error)
VALUES (%(workspace_uid)s, %(at)s, %(reason)s, %(message)s, %(validation_error)s)
ON CONFLICT (workspace_uid) DO UPDATE SET
    failed_at = LEAST(builds.failed_at, EXCLUDED.failed_at),
    failure_reason = CASE WHEN builds.failed_at IS NULL OR EXCLUDED.failed_at < builds.failed_at
        THEN EXCLUDED.failure_reason ELSE builds.failure_reason END,
    failure_message = CASE WHEN builds.failed_at IS NULL OR EXCLUDED.failed_at < builds.failed_at
        THEN EXCLUDED.failure_message ELSE builds.failure_message END,
    validation_error = CASE WHEN builds.failed_at IS NULL OR EXCLUDED.failed_at < builds.failed_at
        THEN EXCLUDED.validation_error ELSE builds.validation_error END
"""

# The earliest disruption stays, as for failures.
RECORD_BUILD_DISRUPTED = """
INSERT INTO builds (workspace_uid, disrupted_at, disruption_reason, disruption_message)
VALUES (%(workspace_uid)s, %(at)s, %(reason)s, %(message)s)
ON CONFLICT (workspace_uid) DO UPDATE SET
    disrupted_at = LEAST(builds.disrupted_at, EXCLUDED.disrupted_at),
    disruption_reason = CASE
        WHEN builds.disrupted_at IS NULL OR EXCLUDED.disrupted_at < builds.disrupted_at
        THEN EXCLUDED.disruption_reason ELSE builds.disruption_reason END,
    disruption_message = CASE
        WHEN builds.disrupted_at IS NULL OR EXCLUDED.disrupted_at < builds.disrupted_at
        THEN EXCLUDED.disruption_message ELSE builds.disruption_message END
"""

# What a restart learns from a workspace's status fills gaps only: a row the
# operator wrote when it happened (the real failure time, message, validation
# flag) is history, and a replay never changes a column that has a value.
REPLAY_BUILD = """
INSERT INTO builds (workspace_uid, preset_uid, workspace_name, template_hash, started_at,
                    ready_at, failed_at, failure_reason, failure_message, validation_error,
                    disrupted_at, disruption_reason, disruption_message)
VALUES (%(workspace_uid)s, %(preset_uid)s, %(workspace_name)s, %(template_hash)s,
        %(started_at)s, %(ready_at)s, %(failed_at)s, %(reason)s, %(message)s,
        %(validation_error)s, %(disrupted_at)s, %(disruption_reason)s, %(disruption_message)s)
ON CONFLICT (workspace_uid) DO UPDATE SET
    preset_uid = COALESCE(builds.preset_uid, EXCLUDED.preset_uid),
    workspace_name = COALESCE(builds.workspace_name, EXCLUDED.workspace_name),
    template_hash = COALESCE(builds.template_hash, EXCLUDED.template_hash),
    started_at = COALESCE(builds.started_at, EXCLUDED.started_at),
    ready_at = COALESCE(builds.ready_at, EXCLUDED.ready_at),
    failed_at = COALESCE(builds.failed_at, EXCLUDED.failed_at),
    failure_reason = CASE WHEN builds.failed_at IS NULL
        THEN EXCLUDED.failure_reason ELSE builds.failure_reason END,
    failure_message = CASE WHEN builds.failed_at IS NULL
        THEN EXCLUDED.failure_message ELSE builds.failure_message END,
    validation_error = CASE WHEN builds.failed_at IS NULL
        THEN EXCLUDED.validation_error ELSE builds.validation_error END,
    disrupted_at = COALESCE(builds.disrupted_at, EXCLUDED.disrupted_at),
    disruption_reason = CASE WHEN builds.disrupted_at IS NULL
        THEN EXCLUDED.disruption_reason ELSE builds.disruption_reason END,
    disruption_message = CASE WHEN builds.disrupted_at IS NULL
        THEN EXCLUDED.disruption_message ELSE builds.disruption_message END
WHERE builds.preset_uid IS NULL OR builds.workspace_name IS NULL
   OR builds.template_hash IS NULL OR builds.started_at IS NULL
   OR (builds.ready_at IS NULL AND EXCLUDED.ready_at IS NOT NULL)
   OR (builds.failed_at IS NULL AND EXCLUDED.failed_at IS NOT NULL)
   OR (builds.disrupted_at IS NULL AND EXCLUDED.disrupted_at IS NOT NULL)
"""

# -- failure policy: shared fragments ----------------------------------------------------

# Each `_TARGET_*` yields one row per preset to evaluate, with the columns
# preset_uid, namespace, name, template_hash, hard_limit, reset_at, template_since,
# counts_from.

_TARGET_ONE = """
WITH target AS (
    SELECT p.uid AS preset_uid, p.namespace, p.name,
           %(template_hash)s::text AS template_hash,
           GREATEST(%(hard_limit)s::int, 0) AS hard_limit,
           p.reset_at,
           CASE WHEN p.template_hash = %(template_hash)s THEN p.template_since END
               AS template_since,
           COALESCE(p.reset_at, '-infinity'::timestamptz) AS counts_from
    FROM presets p
    WHERE p.uid = %(preset_uid)s
)
"""

# Disrupted builds (lost to their infrastructure before they were Ready) tell
# nothing about the template: no part of the failure policy sees them.
_IN_SCOPE = """
b.preset_uid = t.preset_uid
AND b.template_hash = t.template_hash
AND b.started_at >= t.counts_from
AND b.state <> 'disrupted'
"""

# Coder's GetPresetsAtFailureLimit: the latest hard_limit builds, newest first;
# in-flight builds count as not failed. LIMIT 0 makes a hard_limit of 0 inert.
_LATEST_WINDOW = f"""
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE latest.state = 'failed') AS failed
    FROM (
        SELECT b.state FROM builds b
        WHERE {_IN_SCOPE}
        ORDER BY b.started_at DESC, b.workspace_uid DESC
        LIMIT t.hard_limit
    ) latest
) window_ ON true
"""

# The failures since the latest success (by start time, as the window above);
# the lookback restricts which of them still cause backoff.
_STREAK = f"""
LEFT JOIN LATERAL (
    SELECT count(*) AS consecutive_failures,
           count(*) FILTER (WHERE b.failed_at >= %(lookback_start)s) AS recent_failures,
           max(b.failed_at) FILTER (WHERE b.failed_at >= %(lookback_start)s) AS last_failed_at
    FROM builds b
    WHERE {_IN_SCOPE}
      AND b.state = 'failed'
      AND b.started_at > COALESCE(
          (SELECT max(b.started_at) FROM builds b WHERE {_IN_SCOPE} AND b.state = 'succeeded'),
          '-infinity'::timestamptz)
) streak ON true
"""

_LATEST_BUILD = f"""
LEFT JOIN LATERAL (
    SELECT b.state = 'failed' AND b.validation_error AS validation_failed
    FROM builds b
    WHERE {_IN_SCOPE}
    ORDER BY b.started_at DESC, b.workspace_uid DESC
    LIMIT 1
) latest_build ON true
"""

_LAST_FAILURE = f"""
LEFT JOIN LATERAL (
    SELECT b.failure_reason, b.failure_message, b.failed_at
    FROM builds b
    WHERE {_IN_SCOPE} AND b.state = 'failed'
    ORDER BY b.failed_at DESC, b.workspace_uid DESC
    LIMIT 1
) last_failure ON true
"""

# Exponential with a cap: base * 2^(n-1), at most max. The exponent is clamped
# so a long streak cannot overflow float8 before LEAST applies the cap.
_BACKOFF_UNTIL = """
CASE WHEN streak.recent_failures > 0 THEN
    streak.last_failed_at + make_interval(secs => LEAST(
        %(backoff_base_s)s::float8
            * power(2::float8, LEAST(streak.recent_failures - 1, 60)::float8),
        %(backoff_max_s)s::float8))
END
"""

_FAILURE_STATE_COLUMNS = f"""
SELECT t.preset_uid, t.namespace, t.name, t.template_hash, t.hard_limit, t.reset_at,
       t.template_since,
       streak.consecutive_failures::int AS consecutive_failures,
       streak.recent_failures::int AS recent_failures,
       (t.hard_limit > 0 AND window_.failed = t.hard_limit) AS hard_limited,
       COALESCE(latest_build.validation_failed, false) AS validation_failed,
       {_BACKOFF_UNTIL} AS backoff_until,
       last_failure.failure_reason AS last_failure_reason,
       last_failure.failure_message AS last_failure_message,
       last_failure.failed_at AS last_failure_at
FROM target t
{_LATEST_WINDOW}
{_STREAK}
{_LATEST_BUILD}
{_LAST_FAILURE}
"""

# -- failure policy: queries ---------------------------------------------------------------

FAILURE_STATE = _TARGET_ONE + _FAILURE_STATE_COLUMNS

# The first caller for an episode gets a row back; everyone after gets none.
MARK_HARD_LIMIT_NOTIFIED = """
INSERT INTO hard_limit_notifications (preset_uid, template_hash, reset_epoch, notified_at)
VALUES (%(preset_uid)s, %(template_hash)s,
        COALESCE(%(reset_epoch)s::timestamptz, '-infinity'::timestamptz),
        COALESCE(%(at)s::timestamptz, now()))
ON CONFLICT DO NOTHING
RETURNING preset_uid
"""

# -- claims ----------------------------------------------------------------------------------

RECORD_CLAIM_REQUESTED = """
INSERT INTO claims (claim_uid, preset_uid, namespace, claim_name, owner, requested_at)
VALUES (%(claim_uid)s, %(preset_uid)s, %(namespace)s, %(claim_name)s, %(owner)s, %(at)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    preset_uid = COALESCE(claims.preset_uid, EXCLUDED.preset_uid),
    namespace = COALESCE(claims.namespace, EXCLUDED.namespace),
    claim_name = COALESCE(claims.claim_name, EXCLUDED.claim_name),
    owner = COALESCE(claims.owner, EXCLUDED.owner),
    requested_at = LEAST(claims.requested_at, EXCLUDED.requested_at)
"""

# The earliest binding wins: a claim binds once; a later report is a replay.
# After a rebind (rebound_at) the current workspace is the rebind's.
RECORD_CLAIM_BOUND = """
INSERT INTO claims (claim_uid, workspace_uid, workspace_name, owner, source, bound_at)
VALUES (%(claim_uid)s, %(workspace_uid)s, %(workspace_name)s, %(owner)s, %(source)s, %(at)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    workspace_uid = CASE WHEN claims.rebound_at IS NULL
            AND (claims.bound_at IS NULL OR EXCLUDED.bound_at < claims.bound_at)
        THEN EXCLUDED.workspace_uid ELSE claims.workspace_uid END,
    workspace_name = CASE WHEN claims.rebound_at IS NULL
            AND (claims.bound_at IS NULL OR EXCLUDED.bound_at < claims.bound_at)
        THEN EXCLUDED.workspace_name ELSE claims.workspace_name END,
    source = CASE WHEN claims.rebound_at IS NULL
            AND (claims.bound_at IS NULL OR EXCLUDED.bound_at < claims.bound_at)
        THEN EXCLUDED.source ELSE claims.source END,
    owner = COALESCE(claims.owner, EXCLUDED.owner),
    bound_at = LEAST(claims.bound_at, EXCLUDED.bound_at)
"""

RECORD_CLAIM_REINITIALIZED = """
INSERT INTO claims (claim_uid, reinitialized_at)
VALUES (%(claim_uid)s, %(at)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    reinitialized_at = LEAST(claims.reinitialized_at, EXCLUDED.reinitialized_at)
"""

RECORD_CREATE_REFUSED = """
INSERT INTO workspace_create_refusals (preset_uid, refused_at, http_status, message)
VALUES (%(preset_uid)s, %(at)s, %(status)s, %(message)s)
"""

CREATE_REFUSALS = """
SELECT refused_at, http_status, message FROM workspace_create_refusals
WHERE preset_uid = %(preset_uid)s
ORDER BY refused_at DESC, id DESC
LIMIT %(limit)s
"""

RECORD_CLAIM_FAILED = """
INSERT INTO claims (claim_uid, failed_at, failure_reason)
VALUES (%(claim_uid)s, %(at)s, %(reason)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    failure_reason = CASE WHEN claims.failed_at IS NULL OR EXCLUDED.failed_at < claims.failed_at
        THEN EXCLUDED.failure_reason ELSE claims.failure_reason END,
    failed_at = LEAST(claims.failed_at, EXCLUDED.failed_at)
"""

# A rebind after a lost workspace: the latest one names the current workspace
# (the lost one's uid leaves the row, so the one-claim-per-workspace index holds).
RECORD_CLAIM_REBOUND = """
INSERT INTO claims (claim_uid, workspace_uid, workspace_name, source, rebound_at)
VALUES (%(claim_uid)s, %(workspace_uid)s, %(workspace_name)s, %(source)s, %(at)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    workspace_uid = CASE WHEN claims.rebound_at IS NULL OR EXCLUDED.rebound_at > claims.rebound_at
        THEN EXCLUDED.workspace_uid ELSE claims.workspace_uid END,
    workspace_name = CASE WHEN claims.rebound_at IS NULL OR EXCLUDED.rebound_at > claims.rebound_at
        THEN EXCLUDED.workspace_name ELSE claims.workspace_name END,
    source = CASE WHEN claims.rebound_at IS NULL OR EXCLUDED.rebound_at > claims.rebound_at
        THEN EXCLUDED.source ELSE claims.source END,
    rebound_at = GREATEST(claims.rebound_at, EXCLUDED.rebound_at)
"""

# Its workspace (or the workspace's pod) was deleted while it was Bound.
# The lost workspace's uid leaves claims.workspace_uid, so a later claim may
# never meet it in the unique index (it is gone anyway).
RECORD_CLAIM_WORKSPACE_LOST = """
WITH lost AS (
    INSERT INTO claim_workspace_losses
        (claim_uid, workspace_name, workspace_uid, reason, policy, lost_at)
    VALUES (%(claim_uid)s, %(workspace_name)s, %(workspace_uid)s, %(reason)s, %(policy)s, %(at)s)
    ON CONFLICT (claim_uid, workspace_name) DO UPDATE SET
        workspace_uid = COALESCE(claim_workspace_losses.workspace_uid, EXCLUDED.workspace_uid),
        lost_at = LEAST(claim_workspace_losses.lost_at, EXCLUDED.lost_at)
    RETURNING claim_uid
)
UPDATE claims SET workspace_uid = NULL
WHERE claim_uid = %(claim_uid)s AND workspace_name = %(workspace_name)s
"""

RECORD_CLAIM_EXPIRED = """
INSERT INTO claims (claim_uid, expired_at)
VALUES (%(claim_uid)s, %(at)s)
ON CONFLICT (claim_uid) DO UPDATE SET
    expired_at = LEAST(claims.expired_at, EXCLUDED.expired_at)
"""

CLAIM_LOSSES = """
SELECT claim_uid, workspace_name, workspace_uid, reason, policy, lost_at
FROM claim_workspace_losses WHERE claim_uid = %(claim_uid)s
ORDER BY lost_at, workspace_name
"""

_CLAIM_COLUMNS = """
claim_uid, preset_uid, namespace, claim_name, owner, workspace_uid, workspace_name,
source, state, requested_at, bound_at, reinitialized_at, failed_at, failure_reason,
rebound_at, expired_at
"""

# Ordered by the same expression as the claims_recent index.
RECENT_CLAIMS = f"""
SELECT {_CLAIM_COLUMNS} FROM claims
ORDER BY COALESCE(requested_at, bound_at, failed_at) DESC NULLS LAST, claim_uid
LIMIT %(limit)s
"""

GET_CLAIM = f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_uid = %(claim_uid)s"

# -- reporting -------------------------------------------------------------------------------

HISTORY = """
SELECT b.workspace_uid, b.preset_uid, b.workspace_name, b.template_hash, b.state,
       b.started_at, b.ready_at, b.failed_at, b.validation_error,
       b.failure_reason, b.failure_message,
       b.disrupted_at, b.disruption_reason, b.disruption_message
FROM builds b
JOIN presets p ON p.uid = b.preset_uid
WHERE p.namespace = %(namespace)s AND p.name = %(name)s
ORDER BY b.started_at DESC NULLS LAST, b.workspace_uid DESC
LIMIT %(limit)s
"""

# -- demand (spec.prebuilds.autoscale) ----------------------------------------------------

# One preset's demand in one round trip: its claims requested in the window
# (all, the window's last quarter, the cold ones) over claims_preset_requested,
# and the create-to-Ready seconds of its latest Ready builds of the current
# template over builds_preset_hash_started (newest first, at most %(builds)s).
# A build's start is recorded to the microsecond but its Ready at the pass's
# whole second, so a build Ready within a second can show a negative time:
# it counts as 0 (the resolution of build times is one second).
DEMAND = """
WITH arrivals AS (
    SELECT count(*) AS claims,
           count(*) FILTER (WHERE requested_at >= %(recent_since)s) AS recent,
           count(*) FILTER (WHERE source = 'cold') AS cold
    FROM claims
    WHERE preset_uid = %(preset_uid)s
      AND requested_at >= %(since)s
      AND requested_at <= %(now)s
),
latest AS (
    SELECT GREATEST(EXTRACT(EPOCH FROM ready_at - started_at)::float8, 0) AS seconds
    FROM builds
    WHERE preset_uid = %(preset_uid)s
      AND template_hash = %(template_hash)s
      AND ready_at IS NOT NULL
      AND started_at IS NOT NULL
    ORDER BY started_at DESC
    LIMIT %(builds)s
),
-- How long a slot the latest warm claims took stayed empty: from the claim's
-- bound_at to the Ready of the first build of the template started at or
-- after it (the replacement: the pass that sees the slot taken creates it,
-- with any others it creates then). Claims whose replacement is not Ready yet
-- are left out, and so are claims no build followed within one build time
-- (the build p90): their slot was not refilled (demand mode was lowering
-- the count, or the preset paused), and the next build, started for a later
-- claim, says nothing about how long a slot waits for its replacement.
build_p90 AS (
    SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS seconds FROM latest
),
warm AS (
    SELECT bound_at
    FROM claims
    WHERE preset_uid = %(preset_uid)s
      AND source = 'prebuilt'
      AND requested_at IS NOT NULL
      AND requested_at <= %(now)s
      AND bound_at IS NOT NULL
    ORDER BY requested_at DESC
    LIMIT %(builds)s
),
slots AS (
    SELECT GREATEST(EXTRACT(EPOCH FROM r.ready_at - w.bound_at)::float8, 0) AS seconds
    FROM warm w
    CROSS JOIN LATERAL (
        SELECT b.ready_at
        FROM builds b
        WHERE b.preset_uid = %(preset_uid)s
          AND b.template_hash = %(template_hash)s
          AND b.started_at >= w.bound_at
          AND b.started_at <= w.bound_at + make_interval(secs => (SELECT seconds FROM build_p90))
          AND b.ready_at IS NOT NULL
        ORDER BY b.started_at
        LIMIT 1
    ) r
)
SELECT a.claims, a.recent, a.cold,
       (SELECT count(*) FROM latest) AS builds,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM latest) AS p50,
       (SELECT seconds FROM build_p90) AS p90,
       (SELECT count(*) FROM slots) AS slots,
       (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) FROM slots) AS slot_p90
FROM arrivals a
"""

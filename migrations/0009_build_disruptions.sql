-- A build lost to its infrastructure (evicted, preempted, node lost, pod
-- deleted, readiness lost after Ready, unschedulable) is a disruption, not a
-- failure: recorded with its own time and reason, never counted toward
-- backoff or the hard limit.
ALTER TABLE builds
    ADD COLUMN disrupted_at timestamptz,
    ADD COLUMN disruption_reason text,
    ADD COLUMN disruption_message text;

-- The state gains 'disrupted' for a build disrupted before it was ever Ready.
-- One that was Ready first stays 'succeeded' for the failure policy (its
-- template worked); disrupted_at says what became of it. A failure of its own
-- still wins over both.
ALTER TABLE builds DROP COLUMN state;
ALTER TABLE builds ADD COLUMN state text NOT NULL GENERATED ALWAYS AS (
    CASE
        WHEN failed_at IS NOT NULL AND (ready_at IS NULL OR failed_at >= ready_at) THEN 'failed'
        WHEN ready_at IS NOT NULL THEN 'succeeded'
        WHEN disrupted_at IS NOT NULL THEN 'disrupted'
        ELSE 'building'
    END
) STORED;

-- The failure policy's scope leaves disrupted builds out, as the operator's
-- queries do (ledger/queries.py): they tell nothing about the template.
CREATE OR REPLACE FUNCTION prewarm_derived_status(p presets) RETURNS prebuild_status
LANGUAGE sql STABLE AS $$
    WITH scope AS (
        SELECT b.state, b.validation_error
        FROM builds b
        WHERE b.preset_uid = p.uid
          AND b.template_hash = p.template_hash
          AND b.started_at >= COALESCE(p.reset_at, '-infinity'::timestamptz)
          AND b.state <> 'disrupted'
        ORDER BY b.started_at DESC, b.workspace_uid DESC
    ),
    latest AS (SELECT * FROM scope LIMIT 1),
    window_ AS (
        SELECT count(*) FILTER (WHERE state = 'failed') AS failed
        FROM (SELECT state FROM scope LIMIT GREATEST(COALESCE(p.hard_limit, 0), 0)) w
    )
    SELECT CASE
        WHEN (SELECT state = 'failed' AND validation_error FROM latest) THEN 'validation_failed'
        WHEN COALESCE(p.hard_limit, 0) > 0 AND (SELECT failed FROM window_) = p.hard_limit
            THEN 'hard_limited'
        ELSE 'normal'
    END::prebuild_status
$$;

-- presets.status says what the operator's status says (normal, hard_limited,
-- validation_failed), kept current by the database itself: every write that
-- can move it (a build's start, success or failure, a retry, a new template
-- hash or hard limit) recomputes it in the same transaction, so a reader of
-- the column never sees a state the builds table contradicts.

-- The hard limit in force for the preset (its spec's, else the operator's);
-- NULL until an operator that knows it has upserted the preset.
ALTER TABLE presets ADD COLUMN hard_limit integer;

-- The same rules as the failure policy's queries (ledger/queries.py), over the
-- builds of the current template hash started since the last reset:
-- validation_failed if the latest of them failed as a validation error;
-- hard_limited if the latest hard_limit of them all failed; else normal.
-- A 'validation_failed' set by the operator from a dry-run (no build row)
-- stays until a build that worked, a retry or a new template says otherwise.
CREATE FUNCTION prewarm_derived_status(p presets) RETURNS prebuild_status
LANGUAGE sql STABLE AS $$
    WITH scope AS (
        SELECT b.state, b.validation_error
        FROM builds b
        WHERE b.preset_uid = p.uid
          AND b.template_hash = p.template_hash
          AND b.started_at >= COALESCE(p.reset_at, '-infinity'::timestamptz)
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

CREATE FUNCTION prewarm_refresh_preset_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'builds' THEN
        UPDATE presets p SET status = prewarm_derived_status(p), updated_at = now()
        WHERE p.uid = NEW.preset_uid
          AND p.status IS DISTINCT FROM prewarm_derived_status(p)
          -- A dry-run verdict has no build row: only a build that worked clears it.
          AND NOT (p.status = 'validation_failed'
                   AND prewarm_derived_status(p) = 'normal'
                   AND NEW.state <> 'succeeded');
    ELSE
        UPDATE presets p SET status = prewarm_derived_status(p)
        WHERE p.uid = NEW.uid
          AND p.status IS DISTINCT FROM prewarm_derived_status(p)
          -- A dry-run verdict has no build row: only a new epoch clears it.
          AND NOT (p.status = 'validation_failed'
                   AND prewarm_derived_status(p) = 'normal'
                   AND p.template_hash = OLD.template_hash
                   AND p.reset_at IS NOT DISTINCT FROM OLD.reset_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER builds_refresh_preset_status
AFTER INSERT OR UPDATE ON builds
FOR EACH ROW WHEN (NEW.preset_uid IS NOT NULL)
EXECUTE FUNCTION prewarm_refresh_preset_status();

CREATE TRIGGER presets_refresh_status
AFTER UPDATE OF template_hash, reset_at, hard_limit ON presets
FOR EACH ROW
EXECUTE FUNCTION prewarm_refresh_preset_status();

-- Presets recorded before this migration: bring the column up to date.
UPDATE presets p SET status = prewarm_derived_status(p)
WHERE p.status IS DISTINCT FROM prewarm_derived_status(p);

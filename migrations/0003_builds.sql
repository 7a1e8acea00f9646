-- One row per prebuild attempt (a PrebuiltWorkspace), keyed by its Kubernetes UID.
-- Every column but the key is nullable because events may be replayed out of
-- order: a "failed" can arrive before the "started" that carries the identity.
CREATE TABLE builds (
    workspace_uid    text PRIMARY KEY,
    preset_uid       text REFERENCES presets (uid),
    workspace_name   text,
    template_hash    text,
    started_at       timestamptz,
    ready_at         timestamptz,
    failed_at        timestamptz,
    validation_error boolean NOT NULL DEFAULT false,
    failure_reason   text,
    failure_message  text,
    -- Derived from the timestamps, so the state depends only on which events
    -- were recorded, never on the order they arrived in. A failure after
    -- readiness (e.g. a crash loop) wins over the earlier success.
    state            text NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN failed_at IS NOT NULL AND (ready_at IS NULL OR failed_at >= ready_at) THEN 'failed'
            WHEN ready_at IS NOT NULL THEN 'succeeded'
            ELSE 'building'
        END
    ) STORED
);

-- Failure policy: the latest builds of one preset + template hash.
CREATE INDEX builds_preset_hash_started ON builds (preset_uid, template_hash, started_at DESC);
-- Failure policy: the latest failure of one preset + template hash.
CREATE INDEX builds_preset_hash_failed ON builds (preset_uid, template_hash, failed_at DESC)
    WHERE failed_at IS NOT NULL;
-- `prewarm history`: recent builds of a preset whatever the hash.
CREATE INDEX builds_preset_started ON builds (preset_uid, started_at DESC);

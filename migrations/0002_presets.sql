-- One row per Preset object (keyed by its Kubernetes UID, so a deleted and
-- recreated preset of the same name is a new row and starts with a clean slate).
CREATE TABLE presets (
    uid           text PRIMARY KEY,
    namespace     text NOT NULL,
    name          text NOT NULL,
    -- Hash of the spec that builds are made from; builds of other hashes are history.
    template_hash text NOT NULL,
    -- metadata.generation of the last upsert: an older replay must not undo a newer spec.
    generation    bigint NOT NULL DEFAULT 0,
    -- Last seen value of the prewarm.dev/retry annotation.
    retry_token   text,
    -- Builds started before this no longer count for backoff and the hard limit.
    reset_at      timestamptz,
    status        prebuild_status NOT NULL DEFAULT 'normal',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX presets_namespace_name ON presets (namespace, name);

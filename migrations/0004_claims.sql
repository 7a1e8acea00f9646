-- One row per WorkspaceClaim, keyed by its Kubernetes UID. Nullable columns for
-- the same reason as in builds: the events of one claim may arrive out of order.
CREATE TABLE claims (
    claim_uid        text PRIMARY KEY,
    -- No foreign key: a claim may name a preset the ledger has not seen yet.
    preset_uid       text,
    namespace        text,
    claim_name       text,
    owner            text,
    workspace_uid    text,
    workspace_name   text,
    source           text CHECK (source IN ('prebuilt', 'cold')),
    requested_at     timestamptz,
    bound_at         timestamptz,
    reinitialized_at timestamptz,
    failed_at        timestamptz,
    failure_reason   text,
    state            text NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN failed_at IS NOT NULL AND (bound_at IS NULL OR failed_at >= bound_at) THEN 'failed'
            WHEN bound_at IS NOT NULL THEN 'bound'
            ELSE 'pending'
        END
    ) STORED
);

CREATE INDEX claims_preset ON claims (preset_uid);
CREATE INDEX claims_recent ON claims ((COALESCE(requested_at, bound_at, failed_at)) DESC);

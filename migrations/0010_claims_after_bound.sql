-- After Bound (issue 16): a claim may lose its workspace (deleted, or its pod
-- deleted) and rebind to another one, and its lifetime may end.
--
-- claims.workspace_uid / workspace_name / source name the claim's current
-- workspace; bound_at stays the first binding (a lifetime counts from it) and
-- rebound_at is the latest rebinding. Every lost workspace is a row of
-- claim_workspace_losses, so the history keeps each one.
ALTER TABLE claims ADD COLUMN rebound_at timestamptz;
ALTER TABLE claims ADD COLUMN expired_at timestamptz;

-- The state learns 'expired' (the lifetime or shutdownAt ended the workspace);
-- a failure counts from the latest binding. A generated column cannot be
-- altered in place: it is dropped and added again (no index uses it).
ALTER TABLE claims DROP COLUMN state;
ALTER TABLE claims ADD COLUMN state text NOT NULL GENERATED ALWAYS AS (
    CASE
        WHEN expired_at IS NOT NULL THEN 'expired'
        WHEN failed_at IS NOT NULL
            AND (bound_at IS NULL OR failed_at >= GREATEST(bound_at, rebound_at)) THEN 'failed'
        WHEN bound_at IS NOT NULL THEN 'bound'
        ELSE 'pending'
    END
) STORED;

CREATE TABLE claim_workspace_losses (
    claim_uid      text NOT NULL,
    -- The name, not the uid, is the key: a workspace deleted before the
    -- operator read its uid is still known by name, and a claim's workspaces
    -- have distinct names (a rebind's cold build has its own suffix).
    workspace_name text NOT NULL,
    workspace_uid  text,
    reason         text NOT NULL CHECK (reason IN ('WorkspaceDeleted', 'PodDeleted')),
    policy         text NOT NULL CHECK (policy IN ('Rebind', 'Fail')),
    lost_at        timestamptz NOT NULL,
    PRIMARY KEY (claim_uid, workspace_name)
);

-- A workspace is bound to at most one claim, and the database says so: the
-- API's optimistic concurrency makes one take win, and this index makes the
-- ledger unable to record a second one (a bug, or a replay that lies).
--
-- An unknown workspace uid is NULL. Operators before this migration wrote ''
-- when the workspace was not in their index any more: that meant "unknown"
-- too, so it becomes NULL (and many unknowns are not duplicates).
UPDATE claims SET workspace_uid = NULL WHERE workspace_uid = '';

-- Rows recorded before this index that bind one workspace to several claims
-- would stop the index (and the operator's start). The earliest binding is
-- the one the API server let happen; the others lose the workspace uid
-- (their workspace_name stays, for whoever investigates).
UPDATE claims c SET workspace_uid = NULL
WHERE c.workspace_uid IS NOT NULL
  AND EXISTS (
      SELECT 1 FROM claims first
      WHERE first.workspace_uid = c.workspace_uid
        AND (COALESCE(first.bound_at, 'infinity'), first.claim_uid)
            < (COALESCE(c.bound_at, 'infinity'), c.claim_uid)
  );

CREATE UNIQUE INDEX claims_one_per_workspace ON claims (workspace_uid)
    WHERE workspace_uid IS NOT NULL AND workspace_uid <> '';

-- A claim binds first and takes its workspace right after (docs/decisions.md,
-- "A claim binds first"). If the take never lands (the operator stopped
-- between the two) and the workspace went to another claim, or stopped being
-- Ready, meanwhile, the claim lost it with reason 'WorkspaceUnavailable'.
ALTER TABLE claim_workspace_losses
    DROP CONSTRAINT claim_workspace_losses_reason_check,
    ADD CONSTRAINT claim_workspace_losses_reason_check
        CHECK (reason IN ('WorkspaceDeleted', 'PodDeleted', 'WorkspaceUnavailable'));

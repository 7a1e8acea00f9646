-- PrebuiltWorkspace creates the API server refused (a policy, a missing
-- permission, an invalid object, a quota on their count). No workspace, hence
-- no build row and no UID: one row per refusal, so a reader of the ledger
-- sees that a preset could not even start builds, and why. Never part of the
-- failure policy (nothing was built).
CREATE TABLE workspace_create_refusals (
    id           bigserial PRIMARY KEY,
    preset_uid   text NOT NULL,
    refused_at   timestamptz NOT NULL,
    http_status  integer NOT NULL,
    message      text NOT NULL
);

CREATE INDEX workspace_create_refusals_preset ON workspace_create_refusals (preset_uid, refused_at DESC);

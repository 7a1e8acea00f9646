-- Which hard-limit episode was already announced (PrebuildFailureLimitReached).
-- An episode is a preset + template hash + reset epoch (its reset_at, or
-- -infinity before any reset): a new spec or a retry starts a new episode.
-- The primary key makes "send once" hold across restarts and replicas.
CREATE TABLE hard_limit_notifications (
    preset_uid    text NOT NULL REFERENCES presets (uid),
    template_hash text NOT NULL,
    reset_epoch   timestamptz NOT NULL,
    notified_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (preset_uid, template_hash, reset_epoch)
);

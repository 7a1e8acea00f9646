-- When the preset last switched to its current template hash. A hard-limit
-- episode is the preset's current hash since the later of this and its last
-- reset (reset_at): reverting to a template that was hard-limited before
-- starts a new episode, so PrebuildFailureLimitReached is announced again.
-- NULL (presets recorded before this migration) means "before any episode
-- recorded in hard_limit_notifications", so their marks keep matching.
ALTER TABLE presets ADD COLUMN template_since timestamptz;

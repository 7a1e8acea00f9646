-- Demand mode (spec.prebuilds.autoscale) counts one preset's claims requested
-- in a recent window, once per preset per minute at most: an index on
-- (preset_uid, requested_at) makes that a range scan of the window's rows
-- whatever the table's size (claims_preset alone would read every claim of
-- the preset ever recorded).
CREATE INDEX claims_preset_requested ON claims (preset_uid, requested_at DESC)
    WHERE requested_at IS NOT NULL;

-- A preset's prebuild health, as Coder names it (coder/coder#17432).
CREATE TYPE prebuild_status AS ENUM (
    'normal',           -- prebuilds are created as usual
    'hard_limited',     -- the latest hard_limit builds all failed: no more creates until a reset
    'validation_failed' -- the template itself is invalid (e.g. a 4xx dry-run): retrying cannot help
);

-- The attempt that wrote each side-effect marker, so markers are fenced like every other
-- state change: a stale attempt (one that lost its lease) can no longer start a side effect.
ALTER TABLE job_side_effects ADD COLUMN attempt INT NOT NULL DEFAULT 0;

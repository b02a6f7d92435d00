-- The operators' console (issue 13): who did what, and portals an operator paused.

-- Who caused a state change: NULL for the system itself, else the operator's name and
-- where the action came from (api, dashboard, cli).
ALTER TABLE job_events ADD COLUMN actor TEXT;

-- A paused portal's queued jobs are not claimed (no attempt is spent) until it resumes.
ALTER TABLE portals ADD COLUMN paused_at TIMESTAMPTZ;
ALTER TABLE portals ADD COLUMN paused_by TEXT;

-- Operators' actions on a portal (pause, resume), for its page and the audit trail.
CREATE TABLE portal_events (
    id          BIGSERIAL PRIMARY KEY,
    portal_id   BIGINT NOT NULL REFERENCES portals(id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX portal_events_portal ON portal_events (portal_id, id);

-- Operators list jobs newest first, by portal and by activity; finished jobs feed the charts.
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_portal_created ON jobs (portal_id, created_at DESC);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- The outbox of new jobs as its own narrow table (issue 10). A job is stored with
-- `published_at` already set and one row here; the broker's confirm deletes the row. Before,
-- the confirm was an UPDATE of the wide `jobs` row, which rewrote the row and every one of
-- its indexes for each accepted call. A row left here (the ingress died between commit and
-- confirm, or the broker refused) is published by the sweeper once `stored_at` is older
-- than its grace.
--
-- Retries, reaped orphans and resumed portals still clear `published_at` on the job and
-- are found by `jobs_unpublished`, as before.
CREATE TABLE job_unconfirmed (
    job_id     UUID PRIMARY KEY,
    stored_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Jobs stored before this migration and never confirmed keep their old marks: they are
-- published by the `published_at IS NULL` rule, which stays.

-- Issue 10: less work per job in Postgres, measured with pg_stat_statements on `bench e2e`.
--
-- Foreign keys from the rows written with every job. Each insert into these tables ran an
-- FK trigger that locked the parent row (`SELECT ... FOR KEY SHARE`, ~40 µs and one WAL
-- record each; ~6 per job on `jobs`, one per accepted call on `portals`, whose row every
-- concurrent group of a busy portal then shares as a MultiXact). Nothing deletes jobs or
-- portals (a portal that uninstalls keeps its row and status), and every child row is
-- written in the same statement as the guarded change of the job it records (the insert,
-- claim, end or retry of that job, see common::db::jobs), so none can name a missing job.
ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;
ALTER TABLE job_rest_calls DROP CONSTRAINT IF EXISTS job_rest_calls_job_id_fkey;
ALTER TABLE job_secrets DROP CONSTRAINT IF EXISTS job_secrets_job_id_fkey;
ALTER TABLE job_side_effects DROP CONSTRAINT IF EXISTS job_side_effects_job_id_fkey;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_portal_id_fkey;

-- A job's first history entry ("accepted", queued at `created_at`) is read from the job
-- row itself from now on (common::db::ops::read); the rows written before stay and are
-- read instead of it.

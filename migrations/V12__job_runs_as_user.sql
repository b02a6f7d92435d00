-- Whether the call carried the token of the user its workflow runs as (the token itself
-- is sealed in job_secrets and erased when the job ends). A job that runs as a user but
-- whose token is gone (an operator retried it after its end) must fail clearly instead
-- of running with the installer's rights.
ALTER TABLE jobs ADD COLUMN runs_as_user boolean NOT NULL DEFAULT false;

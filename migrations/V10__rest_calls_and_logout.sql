-- Issue 13, the operators' side.

-- The REST commands each attempt of a job made (method, outcome, duration, how it left),
-- written once at the end of the attempt; see common::bitrix::call_log. Capped per attempt:
-- `omitted` counts what was left out.
CREATE TABLE job_rest_calls (
    job_id      UUID NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt     INT NOT NULL,
    calls       JSONB NOT NULL,
    omitted     INT NOT NULL DEFAULT 0,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);

-- Dashboard sessions live in a signed cookie; a logout lists its session here until the
-- cookie would have expired anyway, so a copied cookie stops working too.
CREATE TABLE revoked_sessions (
    nonce       TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at);

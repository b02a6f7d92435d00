-- Portals that installed the app. Tokens are encrypted (see common::crypto); the
-- application_token verifies every call and event from the portal.
CREATE TABLE portals (
    id                  BIGSERIAL PRIMARY KEY,
    member_id           TEXT NOT NULL UNIQUE,
    domain              TEXT NOT NULL,
    client_endpoint     TEXT NOT NULL,
    application_token   TEXT,
    access_token_enc    BYTEA,
    refresh_token_enc   BYTEA,
    token_expires_at    TIMESTAMPTZ,
    token_version       BIGINT NOT NULL DEFAULT 0,
    status              TEXT NOT NULL DEFAULT 'installed'
                        CHECK (status IN ('installed', 'uninstalled', 'reauth_required')),
    installed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    uninstalled_at      TIMESTAMPTZ
);

-- One row per accepted activity call (kind 'activity') or portal registration (kind 'register').
-- The row is the source of truth; RabbitMQ only carries the id.
CREATE TABLE jobs (
    id                UUID PRIMARY KEY,
    portal_id         BIGINT NOT NULL REFERENCES portals(id),
    kind              TEXT NOT NULL CHECK (kind IN ('activity', 'register')),
    code              TEXT NOT NULL,
    event_token       TEXT,
    workflow_id       TEXT,
    document_id       JSONB,
    properties        JSONB NOT NULL DEFAULT '{}',
    timeout_duration  BIGINT NOT NULL DEFAULT 0,
    state             TEXT NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'discarded')),
    attempt           INT NOT NULL DEFAULT 0,
    max_attempts      INT NOT NULL DEFAULT 8,
    run_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at      TIMESTAMPTZ,
    lease_until       TIMESTAMPTZ,
    outcome           JSONB,
    result            JSONB,
    last_error        TEXT,
    reported_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    UNIQUE (portal_id, event_token)
);
CREATE INDEX jobs_unpublished ON jobs (run_at) WHERE state = 'queued' AND published_at IS NULL;
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state_created ON jobs (state, created_at DESC);

-- Every state change of a job, for operators.
CREATE TABLE job_events (
    id          BIGSERIAL PRIMARY KEY,
    job_id      UUID NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempt     INT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Secrets of a job (e.g. an SMTP password), encrypted, kept apart from the job row so
-- nothing that reads jobs for operators can leak them; erased when the job ends.
CREATE TABLE job_secrets (
    job_id      UUID PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    secret_enc  BYTEA NOT NULL
);

-- Idempotency markers for side effects: recorded before acting, checked on every retry.
CREATE TABLE job_side_effects (
    job_id      UUID NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('started', 'done')),
    value       JSONB,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, key)
);

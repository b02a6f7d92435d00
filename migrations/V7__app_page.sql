-- The portal's language from its install (issue 12): registrations, the app page and texts
-- sent to workflows use it (Russian when unknown).
ALTER TABLE portals ADD COLUMN language TEXT;

-- What b24flow last registered on each portal (activity and robot twin), so "Refresh
-- options" on the app page can say what changed; Bitrix24's list methods return codes only.
CREATE TABLE portal_registrations (
    portal_id     BIGINT NOT NULL REFERENCES portals(id) ON DELETE CASCADE,
    code          TEXT NOT NULL,
    is_robot      BOOLEAN NOT NULL,
    registration  JSONB NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (portal_id, code, is_robot)
);

-- The activities the workers run, as they describe themselves (written by every worker at
-- start); the app page lists them without importing the worker.
CREATE TABLE activity_catalogue (
    code         TEXT PRIMARY KEY,
    position     INT NOT NULL,
    name         JSONB NOT NULL,
    description  JSONB NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

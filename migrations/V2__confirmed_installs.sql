-- Installs are confirmed by the OAuth server (issue 11). Each confirmed install and each
-- uninstall starts a new generation; workers drop sessions of an older one.
ALTER TABLE portals
    ADD COLUMN install_generation BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN installer_user_id  BIGINT;

-- Every process that caches portal sessions LISTENs on this channel
-- (common::bitrix::portal_changes).
CREATE FUNCTION b24flow_portal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('b24flow_portal_changed', NEW.id::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER portals_changed AFTER UPDATE ON portals FOR EACH ROW
    WHEN (OLD.install_generation IS DISTINCT FROM NEW.install_generation
          OR OLD.client_endpoint IS DISTINCT FROM NEW.client_endpoint
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION b24flow_portal_changed();

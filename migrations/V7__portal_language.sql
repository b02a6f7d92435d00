-- The portal's language from its install (issue 12): registrations, the app page and texts
-- sent to workflows use it (Russian when unknown).
ALTER TABLE portals ADD COLUMN language TEXT;

-- The shared limiter's grants in groups (issue 10): the requests of one worker process
-- that ask within the same moment are granted by one statement and one commit instead of
-- one each, whatever portals they are for. Each request keeps its own answer and the
-- rules of `portal_limit_acquire` (V11), which this only calls in a loop.
--
-- Rows are taken in portal order, so two groups that share portals lock them in the same
-- order and never wait on each other in a circle. A portal asked twice in one group is
-- granted twice from its own updated row (the same transaction sees its own update).
CREATE OR REPLACE FUNCTION portal_limit_acquire_many(p_portals BIGINT[], p_headroom INT)
RETURNS TABLE (n BIGINT, granted BOOLEAN, wait_secs DOUBLE PRECISION, parked JSONB)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR r IN SELECT t.portal_id, t.n
               FROM unnest(p_portals) WITH ORDINALITY AS t(portal_id, n)
              ORDER BY t.portal_id, t.n
    LOOP
        SELECT a.granted, a.wait_secs, a.parked INTO granted, wait_secs, parked
          FROM portal_limit_acquire(r.portal_id, p_headroom) a;
        n := r.n;
        RETURN NEXT;
    END LOOP;
END $$;

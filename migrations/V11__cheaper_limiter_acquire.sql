-- The shared limiter's acquire, cheaper (issue 9: 1,000 portals at 2 requests/s need
-- 2,000 grants a second): a grant is one guarded UPDATE instead of SELECT … FOR UPDATE and
-- an UPDATE, and its commit does not wait for the WAL flush.
--
-- Why an unflushed commit is safe here: if Postgres crashes, the grants of the last
-- fraction of a second (wal_writer_delay, ≤ 3 × 200 ms) may be forgotten, so the bucket
-- looks up to about a second emptier than it was. The portal's own bucket drains for as
-- long as Postgres is down and restarting (seconds), which more than covers that; and
-- should it not, the portal answers 503 QUERY_LIMIT_EXCEEDED, which fills our view of the
-- bucket (`note_throttled`, still a flushed commit). Nothing else rides in the statement's
-- transaction: it is called alone, in autocommit.
CREATE OR REPLACE FUNCTION portal_limit_acquire(p_portal BIGINT, p_headroom INT,
                                                OUT granted BOOLEAN,
                                                OUT wait_secs DOUBLE PRECISION,
                                                OUT parked JSONB)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- GCRA: the request fits while the theoretical arrival time is at most `tau` ahead.
    -- clock_timestamp() is read after the row lock is had (a concurrent grant's UPDATE
    -- re-evaluates this one on the row it left), so a wait for the lock is not counted
    -- as time the bucket drained.
    UPDATE portal_limits l
       SET tat = greatest(l.tat, clock_timestamp()) + make_interval(secs => 1.0 / l.rate_per_sec),
           requests = l.requests + 1
     WHERE l.portal_id = p_portal
       AND greatest(l.tat, clock_timestamp()) - clock_timestamp()
           <= make_interval(secs => (greatest(l.burst - p_headroom, 1) - 1) / l.rate_per_sec)
    RETURNING l.parked INTO parked;
    IF FOUND THEN
        granted := true;
        wait_secs := 0;
        RETURN;
    END IF;
    granted := false;
    SELECT l.parked,
           extract(epoch FROM greatest(l.tat, clock_timestamp())
                   - make_interval(secs => (greatest(l.burst - p_headroom, 1) - 1) / l.rate_per_sec)
                   - clock_timestamp())
      INTO parked, wait_secs
      FROM portal_limits l WHERE l.portal_id = p_portal;
    IF FOUND THEN
        RETURN;
    END IF;
    -- First use: the row with the standard plan, then the grant as above.
    INSERT INTO portal_limits (portal_id) VALUES (p_portal) ON CONFLICT DO NOTHING;
    SELECT a.granted, a.wait_secs, a.parked INTO granted, wait_secs, parked
      FROM portal_limit_acquire(p_portal, p_headroom) a;
END $$;

-- The grouped grants of V13, set-based (issue 10). V13 called V11's `portal_limit_acquire`
-- once per request in a PL/pgSQL loop: at two requests a job it was the busiest statement
-- of `bench e2e` (~0.17 ms a request, most of it the per-call overhead, not the UPDATE).
-- Now a group costs two statements whatever its size: the row locks in portal order (two
-- groups sharing portals never wait on each other in a circle; a portal's first use adds
-- its row first), and one UPDATE that takes each portal's grants at once.
--
-- The rule is V11's, per request: the j-th request of a portal in the group (in input
-- order) is granted while the bucket's theoretical arrival time after j-1 grants,
-- start + (j-1)·T with start = max(tat, now), is at most `tau` ahead of now; so a portal
-- asked k times gets g = clamp(floor((now + tau - start) / T) + 1, 0, k) grants and its
-- `tat` moves to start + g·T. Every request refused waits until start + g·T - tau. `now`
-- is read once the rows are locked, so waiting for a lock is not counted as drained time.
CREATE OR REPLACE FUNCTION portal_limit_acquire_many(p_portals BIGINT[], p_headroom INT)
RETURNS TABLE (n BIGINT, granted BOOLEAN, wait_secs DOUBLE PRECISION, parked JSONB)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked BIGINT;
BEGIN
    -- The commit need not wait for the WAL flush; see V11 for why that is safe.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM portal_limits l
     WHERE l.portal_id = ANY (p_portals)
     ORDER BY l.portal_id
       FOR UPDATE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT t.portal_id) FROM unnest(p_portals) AS t(portal_id)) THEN
        -- First use of a portal: its row with the standard plan, locked like the others.
        INSERT INTO portal_limits (portal_id)
        SELECT DISTINCT t.portal_id FROM unnest(p_portals) AS t(portal_id)
        ON CONFLICT DO NOTHING;
        PERFORM 1 FROM portal_limits l
         WHERE l.portal_id = ANY (p_portals)
         ORDER BY l.portal_id
           FOR UPDATE;
    END IF;
    RETURN QUERY
    WITH asked AS (
        SELECT t.portal_id, t.n,
               row_number() OVER (PARTITION BY t.portal_id ORDER BY t.n) AS j
          FROM unnest(p_portals) WITH ORDINALITY AS t(portal_id, n)
    ), bucket AS (
        SELECT l.portal_id, w.k, l.parked, c.now_at,
               greatest(l.tat, c.now_at) AS start,
               1.0 / l.rate_per_sec AS step,
               (greatest(l.burst - p_headroom, 1) - 1) / l.rate_per_sec AS tau
          FROM (SELECT a.portal_id, count(*) AS k FROM asked a GROUP BY a.portal_id) w
          JOIN portal_limits l ON l.portal_id = w.portal_id
         CROSS JOIN (SELECT clock_timestamp() AS now_at) c
    ), decided AS (
        SELECT b.*,
               least(b.k, greatest(0::bigint,
                   floor((extract(epoch FROM b.now_at - b.start) + b.tau) / b.step)::bigint + 1))
                   AS grants
          FROM bucket b
    ), taken AS (
        UPDATE portal_limits l
           SET tat = d.start + make_interval(secs => d.grants * d.step),
               requests = l.requests + d.grants
          FROM decided d
         WHERE l.portal_id = d.portal_id AND d.grants > 0
    )
    SELECT a.n,
           a.j <= d.grants,
           CASE WHEN a.j <= d.grants THEN 0::float8
                ELSE extract(epoch FROM d.start - d.now_at)::float8 + d.grants * d.step - d.tau
           END,
           d.parked
      FROM asked a JOIN decided d ON d.portal_id = a.portal_id
     ORDER BY a.n;
END $$;

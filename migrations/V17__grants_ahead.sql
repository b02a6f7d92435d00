-- Grants taken ahead (issue 10). A job makes at least two requests in a row (its activity's
-- and `bizproc.event.send`), and under load each of them cost a row in a grant group. So a
-- group may also take, for each portal whose asks were all granted, up to `p_ahead` more
-- requests per ask, which the asking process spends on its next requests to that portal
-- for a short while (common::db::grants_ahead) and otherwise lets lapse.
--
-- Only while the bucket stays at most a quarter full, the extra requests included: a busy
-- portal, whose bucket is full, gets exactly what V16 gives it. A request taken ahead but
-- sent a little later is one the bucket drains a little early (the headroom covers it), and
-- one that lapses unsent is lost to the portal: at worst every one lapses, and the first
-- quarter of the burst is spent twice as fast: on the standard plan the 47 requests a
-- burst gives (50 less the headroom) shrink to about 41 at worst.
-- The rule per portal is V16's, with the extra requests counted like grants:
-- e = clamp(floor((now + tau/4 - (start + g·T)) / T) + 1, 0, p_ahead·k) when g = k.
-- `portal_limit_acquire_many` keeps its signature for processes still running the older code,
-- and is now this rule without anything ahead (the end of this file).
CREATE FUNCTION portal_limit_acquire_ahead(p_portals BIGINT[], p_headroom INT, p_ahead INT)
RETURNS TABLE (n BIGINT, granted BOOLEAN, wait_secs DOUBLE PRECISION, parked JSONB, ahead BIGINT)
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
    ), ahead AS (
        SELECT d.*,
               CASE WHEN d.grants < d.k THEN 0::bigint
                    ELSE least(d.k * greatest(p_ahead, 0), greatest(0::bigint,
                        floor((extract(epoch FROM d.now_at - d.start) + d.tau / 4) / d.step
                              - d.grants)::bigint + 1))
               END AS extra
          FROM decided d
    ), taken AS (
        UPDATE portal_limits l
           SET tat = a.start + make_interval(secs => (a.grants + a.extra) * a.step),
               requests = l.requests + a.grants + a.extra
          FROM ahead a
         WHERE l.portal_id = a.portal_id AND a.grants > 0
    )
    SELECT a.n,
           a.j <= d.grants,
           CASE WHEN a.j <= d.grants THEN 0::float8
                ELSE extract(epoch FROM d.start - d.now_at)::float8 + d.grants * d.step - d.tau
           END,
           d.parked,
           d.extra
      FROM asked a JOIN ahead d ON d.portal_id = a.portal_id
     ORDER BY a.n;
END $$;

CREATE OR REPLACE FUNCTION portal_limit_acquire_many(p_portals BIGINT[], p_headroom INT)
RETURNS TABLE (n BIGINT, granted BOOLEAN, wait_secs DOUBLE PRECISION, parked JSONB)
LANGUAGE sql AS $$
    SELECT a.n, a.granted, a.wait_secs, a.parked
      FROM portal_limit_acquire_ahead(p_portals, p_headroom, 0) a
$$;

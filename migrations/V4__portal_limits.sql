-- The REST rate limit of each portal (protocol.md §7), shared by every worker process:
-- a GCRA bucket (tat = theoretical arrival time of the next request) in one row per portal,
-- taken with one statement per request. `parked` holds methods the portal refused with
-- 429 OPERATION_TIME_LIMIT (or that came near their time budget): {"method": unix_until}.
CREATE TABLE portal_limits (
    portal_id        BIGINT PRIMARY KEY REFERENCES portals(id) ON DELETE CASCADE,
    plan             TEXT NOT NULL DEFAULT 'standard'
                     CHECK (plan IN ('standard', 'enterprise', 'custom')),
    rate_per_sec     DOUBLE PRECISION NOT NULL DEFAULT 2 CHECK (rate_per_sec > 0),
    burst            INT NOT NULL DEFAULT 50 CHECK (burst >= 1),
    tat              TIMESTAMPTZ NOT NULL DEFAULT now(),
    parked           JSONB NOT NULL DEFAULT '{}',
    requests         BIGINT NOT NULL DEFAULT 0,
    throttled        BIGINT NOT NULL DEFAULT 0,
    last_throttled_at TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Takes one request from the portal's bucket if it has room (keeping `headroom` requests
-- spare for clock and network jitter) and answers whether it did; if not, how many seconds
-- until it will. Creates the row with the standard plan on first use.
CREATE FUNCTION portal_limit_acquire(p_portal BIGINT, p_headroom INT,
                                     OUT granted BOOLEAN, OUT wait_secs DOUBLE PRECISION,
                                     OUT parked JSONB)
LANGUAGE plpgsql AS $$
DECLARE
    row_ portal_limits%ROWTYPE;
    now_ TIMESTAMPTZ;
    base TIMESTAMPTZ;
    step INTERVAL;
    tau  INTERVAL;
BEGIN
    SELECT * INTO row_ FROM portal_limits WHERE portal_id = p_portal FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO portal_limits (portal_id) VALUES (p_portal) ON CONFLICT DO NOTHING;
        SELECT * INTO row_ FROM portal_limits WHERE portal_id = p_portal FOR UPDATE;
    END IF;
    now_ := clock_timestamp();
    base := greatest(row_.tat, now_);
    step := make_interval(secs => 1.0 / row_.rate_per_sec);
    tau  := step * (greatest(row_.burst - p_headroom, 1) - 1);
    parked := row_.parked;
    IF base - now_ <= tau THEN
        UPDATE portal_limits SET tat = base + step, requests = requests + 1
         WHERE portal_id = p_portal;
        granted := true;
        wait_secs := 0;
    ELSE
        granted := false;
        wait_secs := extract(epoch FROM (base - tau - now_));
    END IF;
END $$;

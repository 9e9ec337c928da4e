-- The hub's schema. Portable SQL only (SQLite and PostgreSQL): TEXT and BIGINT columns, times as
-- Unix milliseconds, no AUTOINCREMENT, no SQLite-only types.

CREATE TABLE stations (
    id TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    age_recipient TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE researchers (
    id TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    researcher_id TEXT NOT NULL REFERENCES researchers (id),
    -- The DSSE envelope exactly as submitted; stations verify it again.
    envelope TEXT NOT NULL,
    mode TEXT NOT NULL,
    train_repository TEXT NOT NULL,
    train_digest TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    submitted_at BIGINT NOT NULL,
    cancelled_at BIGINT
);

CREATE INDEX jobs_by_researcher ON jobs (researcher_id);

CREATE TABLE stops (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    stop_index INTEGER NOT NULL,
    station_id TEXT NOT NULL REFERENCES stations (id),
    status TEXT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    -- When the stop became ready: work is handed out oldest first.
    ready_at BIGINT,
    lease_expires_at BIGINT,
    -- Copied from the job so that finding work needs no join.
    expires_at BIGINT NOT NULL,
    input_state_digest TEXT,
    result_digest TEXT,
    result_size_bytes BIGINT,
    result_uploaded_at BIGINT,
    PRIMARY KEY (job_id, stop_index)
);

CREATE UNIQUE INDEX stops_by_job_and_station ON stops (job_id, station_id);
CREATE INDEX stops_by_station_and_status ON stops (station_id, status, ready_at);
CREATE INDEX stops_by_status ON stops (status);

-- Nonces of accepted request signatures, kept until their signature could no longer pass the
-- clock-skew check.
CREATE TABLE seen_nonces (
    keyid TEXT NOT NULL,
    nonce TEXT NOT NULL,
    forget_after BIGINT NOT NULL,
    PRIMARY KEY (keyid, nonce)
);

CREATE INDEX seen_nonces_by_expiry ON seen_nonces (forget_after);

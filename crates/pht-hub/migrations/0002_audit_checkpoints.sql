-- Witnessed audit checkpoints: each station's signed statement of its audit log's last entry,
-- kept append-only (the hub never updates or deletes a row). Portable SQL, as 0001.

CREATE TABLE audit_checkpoints (
    station_id TEXT NOT NULL REFERENCES stations (id),
    seq BIGINT NOT NULL,
    head_hash TEXT NOT NULL,
    -- The station's time in the checkpoint, and the hub's when it arrived (Unix milliseconds).
    checkpoint_time BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    -- The DSSE envelope exactly as the station signed it.
    envelope TEXT NOT NULL,
    PRIMARY KEY (station_id, seq)
);

-- 008_triggers: NATS JetStream triggers as data (docs/bus.md). One row per
-- trigger name: a put replaces the definition (the canonical JSON, kept as
-- text so it hashes to its version) and clears a delete; a delete is soft,
-- so the row says when it went.
CREATE TABLE cbm_triggers (
    name        text        PRIMARY KEY,
    version     text        NOT NULL,
    definition  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz
);

-- Messages a trigger refused as bad data (not JSON, a path that names
-- nothing, inputs a blueprint refuses), each terminated on the stream.
-- (trigger, stream, seq) is unique: a message whose Term was lost and that
-- comes back is recorded once.
CREATE TABLE cbm_trigger_failures (
    id          bigserial   PRIMARY KEY,
    trigger     text        NOT NULL,
    stream      text        NOT NULL,
    seq         int8        NOT NULL,
    subject     text        NOT NULL,
    reason      text        NOT NULL,
    data        text        NOT NULL,   -- the first 1 KiB of the data, valid UTF-8
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (trigger, stream, seq)
);

-- What each running trigger last reported (the bus writes its row every
-- two seconds): `cerebelum bus` shows a trigger whose consumer has not
-- fetched for three fetch waits, or whose report is old, as stale.
CREATE TABLE cbm_trigger_health (
    trigger        text        PRIMARY KEY,
    process        text        NOT NULL,    -- host:pid of the serve that runs it
    state          text        NOT NULL,
    error          text        NOT NULL DEFAULT '',
    wait_ms        int4        NOT NULL,
    last_fetch_at  timestamptz NOT NULL,
    messages       int8        NOT NULL DEFAULT 0,
    started        int8        NOT NULL DEFAULT 0,
    existing       int8        NOT NULL DEFAULT 0,
    failures       int8        NOT NULL DEFAULT 0,
    naks           int8        NOT NULL DEFAULT 0,
    reported_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

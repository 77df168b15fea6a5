-- 001_init: the tables of the engine core (DESIGN.md section 5).
-- Event payloads are `json`, not `jsonb`: the text is kept byte for byte, so
-- state rebuilt from history equals live state exactly; projections that are
-- queried use jsonb.

CREATE TABLE cbm_blueprints (
    name        text        NOT NULL,
    version     text        NOT NULL,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, version)
);
CREATE INDEX cbm_blueprints_latest ON cbm_blueprints (name, created_at DESC);

CREATE TABLE cbm_executions (
    id          uuid        PRIMARY KEY,
    blueprint   text        NOT NULL,
    version     text        NOT NULL,
    status      text        NOT NULL,
    inputs      jsonb       NOT NULL,
    result      jsonb,
    error       jsonb,
    last_seq    bigint      NOT NULL,
    shard       integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Keyset pagination: (created_at, id) in each filter's order.
CREATE INDEX cbm_executions_created   ON cbm_executions (created_at, id);
CREATE INDEX cbm_executions_status    ON cbm_executions (status, created_at, id);
CREATE INDEX cbm_executions_blueprint ON cbm_executions (blueprint, created_at, id);
-- Resurrection reads only unfinished executions.
CREATE INDEX cbm_executions_unfinished ON cbm_executions (id)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');

CREATE TABLE cbm_events (
    execution_id uuid        NOT NULL,
    seq          bigint      NOT NULL,
    type         text        NOT NULL,
    payload      json        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (execution_id, seq)   -- the optimistic lock
);

CREATE TABLE cbm_timers (
    execution_id uuid        NOT NULL,
    key          text        NOT NULL,
    kind         text        NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE INDEX cbm_timers_due ON cbm_timers (due_at, execution_id, key);

CREATE TABLE cbm_tasks (
    id               bigserial   PRIMARY KEY,
    queue            text        NOT NULL,
    execution_id     uuid        NOT NULL,
    step             text        NOT NULL,
    attempt          integer     NOT NULL,
    payload          jsonb       NOT NULL,
    available_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (execution_id, step, attempt)
);
-- Claiming scans only unleased tasks of a queue, oldest first.
CREATE INDEX cbm_tasks_ready ON cbm_tasks (queue, available_at, id)
    WHERE lease_owner IS NULL;

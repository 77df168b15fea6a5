-- 009_outbox: the transactional outbox (docs/outbox.md). Lifecycle events
-- become rows of cbm_outbox in the SAME statement as the decision that
-- records them (store/pg/store_pg_append.c, CTE ob), so a row exists iff its
-- decision committed, whichever process decided: the engine of `serve`, or a
-- client-only engine (a CLI cancel while no server runs). One publisher per
-- database (bus/outbox.c, under an advisory lock) sends them to NATS
-- JetStream in id order with Nats-Msg-Id = msg_id, and deletes a row only
-- after its publish acknowledgement.
--
-- The outbox is ON for a database while cbm_outbox_config holds its one row
-- (written by `serve --nats`, store_outbox_configure); without the row the
-- append statement's ob CTE joins an empty table and writes nothing.
--   subject      template; {blueprint} and {event} are replaced (the
--                blueprint name with every character outside [A-Za-z0-9_-]
--                turned into '_', so it stays one subject token)
--   max_payload  bytes of an event's payload kept in the message; a bigger
--                one is replaced by {"omitted": true, "bytes": N}
CREATE TABLE cbm_outbox_config (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    subject      text    NOT NULL DEFAULT 'cerebelum.execution.{blueprint}.{event}',
    max_payload  integer NOT NULL DEFAULT 65536 CHECK (max_payload >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Which event types are published, under which event name. The terminal
-- events of a deliberation's child execution (blueprint `_delib.*`) are
-- published as deliberation_finished instead (see the ob CTE).
CREATE TABLE cbm_outbox_events (
    type   text PRIMARY KEY,
    event  text NOT NULL
);
INSERT INTO cbm_outbox_events (type, event) VALUES
    ('ExecutionStarted', 'started'),
    ('ExecutionCompleted', 'completed'),
    ('ExecutionFailed', 'failed'),
    ('ExecutionCancelled', 'cancelled'),
    ('StepCompleted', 'step_completed'),
    ('StepFailed', 'step_failed'),
    ('ApprovalRequested', 'approval_requested');

-- The rows themselves. id orders them (an execution's rows are inserted
-- under its projection's lock, so in seq order); msg_id is
-- "<execution_id>:<seq>", JetStream's deduplication key.
CREATE TABLE cbm_outbox (
    id            bigserial   PRIMARY KEY,
    execution_id  uuid        NOT NULL,
    seq           bigint      NOT NULL,
    subject       text        NOT NULL,
    msg_id        text        NOT NULL,
    payload       json        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

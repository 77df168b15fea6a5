-- 004_idempotency: idempotent starts. An execution may be started with a key
-- chosen by the caller (a client retrying after a lost reply, a webhook
-- delivered twice); the same key for the same blueprint names the same
-- execution. The unique index is the arbiter: of several concurrent starts
-- with one key, whichever engine or process they run in, exactly one insert
-- of the projection commits, and the others fail on this index and are told
-- which execution holds the key (store_append, store_find_by_key). Partial:
-- executions started without a key (NULL) are not indexed at all.
ALTER TABLE cbm_executions ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX cbm_executions_idempotency ON cbm_executions (blueprint, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

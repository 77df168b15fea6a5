-- 005_tasks: what a worker needs to run a remote task, and what the server
-- needs to route and lease it (docs/store.md, "Tasks").
--   handler     the handler the worker runs (the step's "handler")
--   blueprint   the blueprint name, shown to workers
--   requires    capabilities the worker must offer (a JSON object of strings);
--               a claim matches it with `requires <@ capabilities`
--   lease_ms    the lease a claim takes (the step's heartbeat_timeout_ms);
--               0 = the server's default
--   timeout_ms  the step's start-to-close limit, shown to workers
-- A leased task's lease runs out at lease_expires_at; the expiry scan reads
-- only leased rows, by their expiry.
ALTER TABLE cbm_tasks
    ADD COLUMN handler    text    NOT NULL DEFAULT '',
    ADD COLUMN blueprint  text    NOT NULL DEFAULT '',
    ADD COLUMN requires   jsonb   NOT NULL DEFAULT '{}',
    ADD COLUMN lease_ms   bigint  NOT NULL DEFAULT 0,
    ADD COLUMN timeout_ms bigint  NOT NULL DEFAULT 0;
CREATE INDEX cbm_tasks_leased ON cbm_tasks (lease_expires_at)
    WHERE lease_owner IS NOT NULL;

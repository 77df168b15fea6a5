-- 006_engines: one row per engine process that runs executions (not
-- client-only ones), and the fence its commits pass (docs/store.md,
-- "Engines and fencing").
--   id        the engine incarnation, new at each start
--   lock_key  a session advisory lock its "life" connection holds while it
--             lives; a starting engine that can take it knows the holder's
--             session is gone
-- An engine that finds a dead one deletes its row. Every group commit calls
-- cbm_fence(its id), which locks the engine's row FOR SHARE: a commit that
-- already holds the lock makes that DELETE wait until it has landed (the new
-- engine loads after it), and one that comes later finds no row and is
-- refused (SQLSTATE CB002), so a dead engine's late commit can never land
-- after the next engine has read the executions.
CREATE TABLE cbm_engines (
    id          uuid        PRIMARY KEY,
    lock_key    bigint      NOT NULL,
    host        text        NOT NULL DEFAULT '',
    pid         integer     NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION cbm_fence(engine uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF engine IS NULL THEN
        RETURN true;   -- a decision made outside an engine (approve, cancel...)
    END IF;
    PERFORM 1 FROM cbm_engines WHERE id = engine FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'engine % was fenced: another engine found it dead and took over', engine
            USING ERRCODE = 'CB002';
    END IF;
    RETURN true;
END
$$;

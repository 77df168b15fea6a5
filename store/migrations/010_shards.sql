-- 010_shards: several engines on one database (issue 13; docs/architecture.md,
-- "Shards"). Every execution belongs to one of S shards, a stable hash of its
-- id; an engine runs the executions of the shards it leases, and only those.
--
--   S          fixed when this migration runs: the setting cerebelum.shards
--              of the migrating session if set (store_migrate sets it from
--              $CEREBELUM_SHARDS), else 256. It is the number of rows of
--              cbm_shard_leases and a constant in cbm_shard_of's body, so it
--              never changes for a database.
--   cbm_shard_of(id)  the last 32 bits of the id (random in v4 and v8 ids)
--              modulo S; engine/shards.c computes the same in C.
--   cbm_executions.shard  that value, stored (a generated column).
--   cbm_shard_leases  one row per shard: the engine that holds it (NULL:
--              free), until when, and a fencing token that grows at every
--              change of owner.
--   cbm_engines.seen_at  renewed by each engine's lease manager: the live
--              engines an equal share is counted over.
--
-- Fencing: an engine's commit passes cbm_fence_shards(engine, ids, tokens),
-- which locks the lease rows of the batch's shards FOR SHARE in the commit's
-- own transaction and refuses (SQLSTATE CB003) a decision whose shard is no
-- longer held by that engine with the token it loaded the execution under.
-- Taking a shard is an UPDATE of its row, which waits for such a commit to
-- end: once the new owner's UPDATE has committed, no commit of the previous
-- owner can land, so it may load the shard.
DO $$
DECLARE
    s int := coalesce(nullif(current_setting('cerebelum.shards', true), '')::int, 256);
BEGIN
    IF s < 1 OR s > 65536 THEN
        RAISE EXCEPTION 'cerebelum.shards must be between 1 and 65536 (got %)', s;
    END IF;
    EXECUTE format($f$CREATE FUNCTION cbm_shard_of(id uuid) RETURNS int
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS 'SELECT ((''x'' || right($1::text, 8))::bit(32)::bigint %% %s)::int'$f$, s);
    CREATE TABLE cbm_shard_leases (
        shard       int         PRIMARY KEY,
        owner       uuid,
        expires_at  timestamptz NOT NULL DEFAULT '-infinity',
        token       bigint      NOT NULL DEFAULT 0
    );
    INSERT INTO cbm_shard_leases (shard) SELECT generate_series(0, s - 1);
END
$$;

-- 001 reserved a column shard (always 0, never read); it becomes the hash.
ALTER TABLE cbm_executions DROP COLUMN shard,
    ADD COLUMN shard int NOT NULL GENERATED ALWAYS AS (cbm_shard_of(id)) STORED;
CREATE INDEX cbm_executions_shard_unfinished ON cbm_executions (shard, id)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');

ALTER TABLE cbm_engines ADD COLUMN seen_at timestamptz NOT NULL DEFAULT clock_timestamp();

CREATE FUNCTION cbm_fence_shards(engine uuid, ids uuid[], tokens int8[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF engine IS NULL OR ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN true;
    END IF;
    -- In shard order, so two commits and a takeover never wait in a cycle.
    PERFORM 1 FROM cbm_shard_leases l
     WHERE l.shard IN (SELECT cbm_shard_of(u.id) FROM unnest(ids, tokens) AS u(id, tok)
                        WHERE u.tok > 0)
     ORDER BY l.shard FOR SHARE;
    IF EXISTS (SELECT 1 FROM unnest(ids, tokens) AS u(id, tok)
                JOIN cbm_shard_leases l ON l.shard = cbm_shard_of(u.id)
               WHERE u.tok > 0 AND (l.owner IS DISTINCT FROM engine OR l.token <> u.tok)) THEN
        RAISE EXCEPTION 'engine % no longer holds a shard of this batch with the token it loaded under',
            engine USING ERRCODE = 'CB003';
    END IF;
    RETURN true;
END
$$;

-- 010_shards: several engines on one database (issue 13; docs/architecture.md,
-- "Shards"). Every execution belongs to one of S shards, cbm_shard_of(id):
-- the last 32 bits of its id modulo S (engine: store_shard_of). S is fixed
-- here: the session's cerebelum.shards (store_migrate sets it from
-- $CEREBELUM_SHARDS), else 256; it is the number of rows of cbm_shard_leases
-- and a constant in cbm_shard_of. A lease row: the engine that holds the
-- shard (NULL: free), until when, and a fencing token that grows at every
-- change of owner. cbm_engines.seen_at: renewed by each lease manager.
-- Fencing: a commit locks its shards' lease rows FOR SHARE and is refused
-- (CB003) unless this engine still holds each with the token it loaded the
-- execution under; a take is an UPDATE of the row, which waits for (or
-- skips) such a commit, so once it has committed no commit of the previous
-- owner can land and the new owner may load the shard.
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

-- The group commit locks and counts the matching rows itself; this compares.
CREATE FUNCTION cbm_shards_held(got bigint, want bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF got <> want THEN
        RAISE EXCEPTION 'this engine no longer holds a shard of this batch with the token it loaded under'
            USING ERRCODE = 'CB003';
    END IF;
    RETURN true;
END
$$;

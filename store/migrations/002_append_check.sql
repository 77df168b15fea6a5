-- 002_append_check: a guard the group-commit statement (store/pg/
-- store_pg_append.c) calls last. Each decision that updates an execution
-- updates its projection only WHERE last_seq = the seq the engine expected;
-- when fewer rows matched than decisions were sent (a stale engine, or an
-- execution that does not exist), this raises SQLSTATE CB001 and the whole
-- statement, and so the whole batch, rolls back. The store then finds the
-- offending decisions, rejects them, and retries the others. A plain SQL
-- statement cannot raise an error itself, hence this one small function.
CREATE FUNCTION cbm_expect_rows(actual bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF actual IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'cerebelum: % of % execution projections matched their expected seq',
            actual, expected USING ERRCODE = 'CB001';
    END IF;
    RETURN actual;
END
$$;

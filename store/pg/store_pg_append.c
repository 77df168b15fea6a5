/*
 * store_pg_append.c - group commit: n decisions, one statement, one
 * transaction, one round trip, one fsync.
 *
 * Each column of the batch (every event's execution id, every event's seq...)
 * travels as one text array parameter, and a single prepared statement made
 * of writable CTEs unnests them into every table a decision touches. Without
 * BEGIN the statement is its own transaction, so the batch is atomic: either
 * every row of every decision is written or none is. The number of statements
 * does not depend on n (measured figures: docs/store.md).
 *
 * Optimistic concurrency. Two guards catch a decision built on a stale view:
 * the primary key (execution_id, seq) of cbm_events (SQLSTATE 23505), and the
 * projection update, which matches only WHERE last_seq = expected_seq and is
 * counted by cbm_expect_rows() (migration 002, SQLSTATE CB001), which also
 * catches an update of an execution that does not exist. Either failure
 * rolls the whole batch back; we then ask the database which decisions are
 * stale (one query for the batch), reject those (CBM_ECONFLICT, or
 * CBM_ENOTFOUND for a missing execution) and send the rest again. Each round
 * removes at least one decision, so this ends.
 *
 * Lock order. Two engines whose batches share executions would deadlock if
 * each locked them in its own order (the server breaks that after
 * deadlock_timeout, 1 s, and we would retry; measured: it happens). So the
 * rows go in sorted by execution id and the statement first locks every
 * projection it updates in id order (CTE lk). lk runs to completion before
 * anything else: the final SELECT reads ux, whose plan starts with a one-time
 * filter that counts lk (joining lk instead made the planner loop over it,
 * O(n^2), measured 35 ms for 500 rows), and the CTEs nobody reads run after
 * the final SELECT. An execution's events, timers and tasks are only ever
 * written under its projection's lock, and new executions are inserted in id
 * order.
 *
 * All sub-statements of one statement see the same snapshot and must not
 * modify one row twice, so timers are normalised per decision first: of
 * several timers_set with one key the last wins, and a key both cleared and
 * set ends up set (clear, then set). Clears and sets of different keys touch
 * different rows and need nothing.
 *
 * Idempotency keys (migration 004) are one more unique index that a new
 * execution's insert can hit (23505 again): classify() also asks, per new
 * execution with a key, whether another execution of its blueprint holds
 * it, and finds keys claimed twice within the batch itself; those decisions
 * get CBM_EEXIST and the rest is sent again, like a stale seq.
 *
 * The updates and deletes name the batch's ids with = ANY(array) beside the
 * join on unnest, so the planner can fetch those rows with one bitmap scan of
 * the key and hash them against the batch. With the session's settings
 * (store_pg.c: no sequential scans, generic plans) the plan stays an index
 * plan whatever the statistics were when it was prepared.
 *
 * A decision's snapshot (store.h) is one more upsert (CTE sn) into
 * cbm_snapshots: at most one row per decision, so never a row twice, and
 * written under the projection's lock like everything else of the execution.
 *
 * The outbox (migration 009, docs/outbox.md) is one more insert (CTE ob):
 * each lifecycle event of the batch (cbm_outbox_events) becomes a row of
 * cbm_outbox, but only while cbm_outbox_config holds its row: the setting
 * belongs to the database, so every process that decides (the server's
 * engine, a client-only engine cancelling from the CLI) writes rows alike,
 * and with the outbox off the CTE joins an empty table and costs nothing
 * measurable. Being part of the statement, the rows commit or roll back with
 * the events: a decision rejected and retried without, or isolated for its
 * data, leaves none. They are inserted in event order (ORDER BY ordinality;
 * the batch is in execution id, then seq order) after lk has locked the
 * projections, so one execution's rows get increasing ids in seq order.
 * When it wrote any, the statement also notifies channel cbm_outbox (sent by
 * PostgreSQL at commit, not at all on rollback): the publisher LISTENs, so it
 * wakes whichever process committed, without polling.
 */
#include "store/pg/store_pg_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbm_internal.h"

/* Column indexes into s->cols, which are the statement's $1..$42. */
enum {
    EV_ID, EV_SEQ, EV_TYPE, EV_PAYLOAD, EV_AT,                                 /* $1-$5 */
    NX_ID, NX_BLUEPRINT, NX_VERSION, NX_STATUS, NX_INPUTS, NX_RESULT, NX_ERROR,
    NX_LAST_SEQ,                                                               /* $6-$13 */
    UX_ID, UX_EXPECTED, UX_STATUS, UX_RESULT, UX_ERROR, UX_LAST_SEQ,           /* $14-$19 */
    TS_ID, TS_KEY, TS_KIND, TS_DUE,                                            /* $20-$23 */
    TC_ID, TC_KEY,                                                             /* $24-$25 */
    TK_ID, TK_STEP, TK_ATTEMPT, TK_QUEUE, TK_PAYLOAD,                          /* $26-$30 */
    SN_ID, SN_SEQ, SN_STATE,                                                   /* $31-$33 */
    NX_KEY,                                                                    /* $34 */
    TK_HANDLER, TK_BLUEPRINT, TK_REQUIRES, TK_LEASE, TK_TIMEOUT,               /* $35-$39 */
    TD_ID, TD_STEP, TD_ATTEMPT,                                                /* $40-$42 */
    FS_ID, FS_TOKEN,                                                           /* $43-$44 */
    NCOLS_
};
_Static_assert(NCOLS_ == APPEND_NCOLS, "APPEND_NCOLS matches the statement");

/* One statement for a whole group commit; with the outbox's rows and the
 * fence it is over the 4,095 bytes C99 promises for a literal: gcc and
 * clang take far more, so the pedantic warning is off for it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
static const char sql_append[] =
    "WITH ev AS ("
    " INSERT INTO cbm_events (execution_id, seq, type, payload, recorded_at)"
    " SELECT u.id, u.seq, u.type, u.payload, 'epoch'::timestamptz + u.at * interval '1 microsecond'"
    " FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::json[], $5::int8[])"
    "  AS u(id, seq, type, payload, at)"
    "), nx AS ("
    " INSERT INTO cbm_executions (id, blueprint, version, status, inputs, result, error, last_seq,"
    "  created_at, updated_at, idempotency_key)"
    " SELECT u.id, u.blueprint, u.version, u.status, u.inputs, u.result, u.error, u.last_seq, u.ts, u.ts,"
    "  u.key"
    " FROM (SELECT *, clock_timestamp() AS ts"  /* volatile: evaluated once per row */
    "  FROM unnest($6::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::jsonb[],"
    "  $12::jsonb[], $13::int8[], $34::text[]) AS u(id, blueprint, version, status, inputs, result,"
    "  error, last_seq, key)) AS u"
    "), lk AS ("
    " SELECT x.id FROM cbm_executions x WHERE x.id = ANY ($14::uuid[]) ORDER BY x.id FOR UPDATE"
    "), ux AS ("
    " UPDATE cbm_executions e SET status = u.status, result = u.result, error = u.error,"
    "  last_seq = u.last_seq, updated_at = clock_timestamp()"
    " FROM unnest($14::uuid[], $15::int8[], $16::text[], $17::jsonb[], $18::jsonb[], $19::int8[])"
    "  AS u(id, expected, status, result, error, last_seq)"
    " WHERE e.id = u.id AND e.last_seq = u.expected AND e.id = ANY ($14::uuid[])"
    "  AND (SELECT count(*) FROM lk) >= 0"  /* one-time filter: lk first, whole */
    " RETURNING 1"
    "), ts AS ("
    " INSERT INTO cbm_timers (execution_id, key, kind, due_at)"
    " SELECT u.id, u.key, u.kind, 'epoch'::timestamptz + u.due * interval '1 microsecond'"
    " FROM unnest($20::uuid[], $21::text[], $22::text[], $23::int8[]) AS u(id, key, kind, due)"
    " ON CONFLICT (execution_id, key) DO UPDATE SET kind = excluded.kind, due_at = excluded.due_at"
    "), tc AS ("
    " DELETE FROM cbm_timers t USING unnest($24::uuid[], $25::text[]) AS u(id, key)"
    " WHERE t.execution_id = u.id AND t.key = u.key AND t.execution_id = ANY ($24::uuid[])"
    "), tk AS ("
    " INSERT INTO cbm_tasks (queue, execution_id, step, attempt, payload, handler, blueprint,"
    "  requires, lease_ms, timeout_ms)"
    " SELECT u.queue, u.id, u.step, u.attempt, u.payload, u.handler, u.blueprint, u.requires,"
    "  u.lease_ms, u.timeout_ms"
    " FROM unnest($26::uuid[], $27::text[], $28::int4[], $29::text[], $30::jsonb[], $35::text[],"
    "  $36::text[], $37::jsonb[], $38::int8[], $39::int8[])"
    "  AS u(id, step, attempt, queue, payload, handler, blueprint, requires, lease_ms, timeout_ms)"
    "), td AS ("
    " DELETE FROM cbm_tasks t USING unnest($40::uuid[], $41::text[], $42::int4[]) AS u(id, step, attempt)"
    " WHERE t.execution_id = u.id AND t.step = u.step AND t.attempt = u.attempt"
    "  AND t.execution_id = ANY ($40::uuid[])"
    "), sn AS ("
    " INSERT INTO cbm_snapshots (execution_id, seq, state)"
    " SELECT u.id, u.seq, u.state FROM unnest($31::uuid[], $32::int8[], $33::json[]) AS u(id, seq, state)"
    " ON CONFLICT (execution_id) DO UPDATE SET seq = excluded.seq, state = excluded.state"
    "), ob AS ("  /* migration 009: the outbox, only while cbm_outbox_config has its row */
    " INSERT INTO cbm_outbox (execution_id, seq, subject, msg_id, payload)"
    " SELECT o.id, o.seq, replace(replace(c.subject, '{blueprint}',"
    "  regexp_replace(o.bp, '[^A-Za-z0-9_-]', '_', 'g')), '{event}', o.event),"
    "  o.id::text || ':' || o.seq,"
    "  json_build_object('event', o.event, 'type', o.type, 'execution_id', o.id,"
    "  'blueprint', o.bp, 'seq', o.seq, 'step', o.payload->>'step', 'payload',"
    "  CASE WHEN octet_length(o.payload::text) <= c.max_payload THEN o.payload"
    "  ELSE json_build_object('omitted', true, 'bytes', octet_length(o.payload::text)) END)"
    " FROM (SELECT u.id, u.seq, u.type, u.payload, u.ord, coalesce(n.bp, x.blueprint, '') AS bp,"
    "   CASE WHEN left(coalesce(n.bp, x.blueprint), 7) = '_delib.' AND u.type IN"
    "    ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled')"
    "    THEN 'deliberation_finished' ELSE m.event END AS event"
    "  FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::json[]) WITH ORDINALITY"
    "   AS u(id, seq, type, payload, ord)"
    "  JOIN cbm_outbox_events m ON m.type = u.type"
    "  LEFT JOIN unnest($6::uuid[], $7::text[]) AS n(id, bp) ON n.id = u.id"
    "  LEFT JOIN cbm_executions x ON x.id = u.id) AS o, cbm_outbox_config c"
    " WHERE EXISTS (SELECT 1 FROM cbm_outbox_config)"  /* one-time filter: off, no work */
    " ORDER BY o.ord"
    " RETURNING 1"
    ")"
    " SELECT cbm_expect_rows((SELECT count(*) FROM ux), cardinality($14::uuid[])),"
    "  cbm_fence($45::uuid),"  /* migration 006: refused once this engine is fenced */
    /* 010: shard leases. The (shard, token) pairs of the batch; the lease
     * rows that still match, locked FOR SHARE in shard order (a take waits
     * for them, or skips them) and counted; a row taken meanwhile is
     * re-checked after the lock and no longer counts. */
    "  cbm_shards_held((SELECT count(*) FROM (SELECT 1 FROM cbm_shard_leases l"
    "   JOIN (SELECT DISTINCT cbm_shard_of(u.id) AS shard, u.tok"
    "    FROM unnest($43::uuid[], $44::int8[]) AS u(id, tok)) AS p ON l.shard = p.shard"
    "   WHERE l.owner = $45::uuid AND l.token = p.tok ORDER BY l.shard FOR SHARE OF l) AS h),"
    "   (SELECT count(DISTINCT (cbm_shard_of(u.id), u.tok))"
    "    FROM unnest($43::uuid[], $44::int8[]) AS u(id, tok))),"
    "  (SELECT count(pg_notify('cbm_outbox', '')) FROM (SELECT 1 FROM ob LIMIT 1) AS w),"
    /* 010: a "wake" row calls the engine that holds the execution's shard
     * at once (it LISTENs; store.h, store_wake_listen), sent at commit. */
    "  (SELECT count(pg_notify('cbm_wake', w.id::text)) FROM unnest($20::uuid[], $21::text[])"
    "   AS w(id, key) WHERE w.key = 'wake')";
#pragma GCC diagnostic pop

/* Where each execution of the batch stands: projection last_seq (NULL when
 * the execution does not exist), the highest event seq, and whether another
 * execution of the blueprint holds the idempotency key it would take ($2,
 * $3: NULL for decisions that take none). */
static const char sql_conflicts[] =
    "SELECT u.i, x.last_seq,"
    " (SELECT max(v.seq) FROM cbm_events v WHERE v.execution_id = u.id),"
    " EXISTS (SELECT 1 FROM cbm_executions k WHERE k.blueprint = u.bp"
    "  AND k.idempotency_key = u.key AND k.id <> u.id)"
    " FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS u(id, bp, key, i)"
    " LEFT JOIN cbm_executions x ON x.id = u.id AND x.id = ANY ($1::uuid[])";

/* Invariants the engine guarantees; breaking one is a bug, not a failure. */
static void check_decision(const store_decision_t *d)
{
    assert(d != NULL);
    assert(d->nevents >= 1 && d->events != NULL);
    assert(d->events[0].seq == d->expected_seq + 1 && "events[0].seq must be expected_seq + 1");
    for (size_t j = 1; j < d->nevents; j++) assert(d->events[j].seq == d->events[j - 1].seq + 1);
    assert(d->status != NULL);
    assert(!d->is_new || (d->expected_seq == 0 && d->blueprint != NULL && d->version != NULL &&
                          d->inputs != NULL));
    assert((d->snapshot == NULL || (d->snapshot_seq >= 1 &&
                                    d->snapshot_seq <= d->events[d->nevents - 1].seq)) &&
           "a snapshot covers events 1..snapshot_seq of this decision's history");
    (void)d;
}


static void add_timers(store_t *s, const store_decision_t *d)
{
    pg_array_t *c = s->cols;

    for (size_t j = 0; j < d->ntimers_set; j++) {
        const store_timer_t *t = &d->timers_set[j];
        bool later = false;

        for (size_t k = j + 1; k < d->ntimers_set && !later; k++)
            later = strcmp(d->timers_set[k].key, t->key) == 0;
        if (later) continue; /* the last one with this key wins */
        store_pg_array_add_text(&c[TS_ID], d->execution_id);
        store_pg_array_add_text(&c[TS_KEY], t->key);
        store_pg_array_add_text(&c[TS_KIND], t->kind);
        store_pg_array_add_int(&c[TS_DUE], t->due_at_us);
    }
    for (size_t j = 0; j < d->ntimers_cleared; j++) {
        const char *key = d->timers_cleared[j];
        bool set = false;

        for (size_t k = 0; k < d->ntimers_set && !set; k++)
            set = strcmp(d->timers_set[k].key, key) == 0;
        if (set) continue; /* cleared, then set again: the upsert does both */
        store_pg_array_add_text(&c[TC_ID], d->execution_id);
        store_pg_array_add_text(&c[TC_KEY], key);
    }
}

static void add_decision(store_t *s, const store_decision_t *d)
{
    pg_array_t *c = s->cols;
    int64_t last = d->events[d->nevents - 1].seq;

    /* events[j].execution_id is not read: the decision's id is used. */
    for (size_t j = 0; j < d->nevents; j++) {
        const store_event_t *e = &d->events[j];
        store_pg_array_add_text(&c[EV_ID], d->execution_id);
        store_pg_array_add_int(&c[EV_SEQ], e->seq);
        store_pg_array_add_text(&c[EV_TYPE], e->type);
        store_pg_array_add_text(&c[EV_PAYLOAD], e->payload);
        store_pg_array_add_int(&c[EV_AT], e->recorded_at_us);
    }
    if (d->is_new) {
        store_pg_array_add_text(&c[NX_ID], d->execution_id);
        store_pg_array_add_text(&c[NX_BLUEPRINT], d->blueprint);
        store_pg_array_add_text(&c[NX_VERSION], d->version);
        store_pg_array_add_text(&c[NX_STATUS], d->status);
        store_pg_array_add_text(&c[NX_INPUTS], d->inputs);
        store_pg_array_add_text(&c[NX_RESULT], d->result);
        store_pg_array_add_text(&c[NX_ERROR], d->error);
        store_pg_array_add_int(&c[NX_LAST_SEQ], last);
        store_pg_array_add_text(&c[NX_KEY], d->idempotency_key);
    } else {
        store_pg_array_add_text(&c[UX_ID], d->execution_id);
        store_pg_array_add_int(&c[UX_EXPECTED], d->expected_seq);
        store_pg_array_add_text(&c[UX_STATUS], d->status);
        store_pg_array_add_text(&c[UX_RESULT], d->result);
        store_pg_array_add_text(&c[UX_ERROR], d->error);
        store_pg_array_add_int(&c[UX_LAST_SEQ], last);
    }
    if (d->shard_token > 0) {
        store_pg_array_add_text(&c[FS_ID], d->execution_id);
        store_pg_array_add_int(&c[FS_TOKEN], d->shard_token);
    }
    add_timers(s, d);
    if (d->snapshot != NULL) {
        store_pg_array_add_text(&c[SN_ID], d->execution_id);
        store_pg_array_add_int(&c[SN_SEQ], d->snapshot_seq);
        store_pg_array_add_text(&c[SN_STATE], d->snapshot);
    }
    /* tasks[j].execution_id is not read either. */
    for (size_t j = 0; j < d->ntasks; j++) {
        const store_task_t *t = &d->tasks[j];
        store_pg_array_add_text(&c[TK_ID], d->execution_id);
        store_pg_array_add_text(&c[TK_STEP], t->step);
        store_pg_array_add_int(&c[TK_ATTEMPT], t->attempt);
        store_pg_array_add_text(&c[TK_QUEUE], t->queue);
        store_pg_array_add_text(&c[TK_PAYLOAD], t->payload);
        store_pg_array_add_text(&c[TK_HANDLER], t->handler != NULL ? t->handler : t->step);
        store_pg_array_add_text(&c[TK_BLUEPRINT], t->blueprint != NULL ? t->blueprint : "");
        store_pg_array_add_text(&c[TK_REQUIRES], t->requires != NULL ? t->requires : "{}");
        store_pg_array_add_int(&c[TK_LEASE], t->lease_ms);
        store_pg_array_add_int(&c[TK_TIMEOUT], t->timeout_ms);
    }
    for (size_t j = 0; j < d->ntasks_done; j++) {
        store_pg_array_add_text(&c[TD_ID], d->execution_id);
        store_pg_array_add_text(&c[TD_STEP], d->tasks_done[j].step);
        store_pg_array_add_int(&c[TD_ATTEMPT], d->tasks_done[j].attempt);
    }
}

static int cmp_decision_id(const void *a, const void *b)
{
    const store_decision_t *x = *(store_decision_t *const *)a, *y = *(store_decision_t *const *)b;
    return strcmp(x->execution_id, y->execution_id);
}

/* The statement's parameters for the decisions still pending
 * (result_code == 0), in execution id order. */
static int build_params(store_t *s, store_decision_t *const *ds, size_t n, const char **vals,
                        cbm_error_t *err)
{
    size_t np = 0;

    if (n > s->sorted_cap) {
        store_decision_t **nb = realloc(s->sorted, n * sizeof(*nb));
        if (nb == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
        s->sorted = nb;
        s->sorted_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        if (ds[i]->result_code == 0) s->sorted[np++] = ds[i];
    qsort(s->sorted, np, sizeof(*s->sorted), cmp_decision_id);
    for (size_t c = 0; c < NCOLS_; c++) store_pg_array_reset(&s->cols[c]);
    for (size_t i = 0; i < np; i++) {
        assert((i == 0 || strcmp(s->sorted[i - 1]->execution_id, s->sorted[i]->execution_id) != 0) &&
               "a batch holds at most one decision per execution");
        add_decision(s, s->sorted[i]);
    }
    for (size_t c = 0; c < NCOLS_; c++) {
        vals[c] = store_pg_array_finish(&s->cols[c]);
        if (vals[c] == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    }
    return 0;
}

static void mark_pending(store_decision_t *const *ds, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        if (ds[i]->result_code == 0) ds[i]->result_code = code;
}

/* A new execution whose idempotency key an earlier pending decision of the
 * batch takes too (for the same blueprint): both inserts would fail on the
 * unique index together, so the later one yields. */
static bool key_taken_earlier(store_decision_t *const *pending, size_t i)
{
    const store_decision_t *d = pending[i];

    if (!d->is_new || d->idempotency_key == NULL) return false;
    for (size_t j = 0; j < i; j++) {
        const store_decision_t *o = pending[j];
        if (o->is_new && o->idempotency_key != NULL && o->result_code == 0 &&
            strcmp(o->idempotency_key, d->idempotency_key) == 0 &&
            strcmp(o->blueprint, d->blueprint) == 0)
            return true;
    }
    return false;
}

/* Which pending decision is stale, or takes a key that is taken? Marks each
 * with CBM_ECONFLICT, CBM_ENOTFOUND or CBM_EEXIST. Returns how many it marked
 * (>= 0), or a CBM_E* code. */
static int classify(store_t *s, store_decision_t *const *ds, size_t n, cbm_error_t *err)
{
    /* Free to reuse: the batch failed. */
    pg_array_t *ids = &s->cols[EV_ID], *bps = &s->cols[EV_SEQ], *keys = &s->cols[EV_TYPE];
    store_decision_t **pending = calloc(n ? n : 1, sizeof(*pending));
    const char *vals[3];
    PGresult *res;
    size_t np = 0;
    int marked = 0;

    if (pending == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    store_pg_array_reset(ids);
    store_pg_array_reset(bps);
    store_pg_array_reset(keys);
    for (size_t i = 0; i < n; i++) {
        bool keyed = ds[i]->is_new && ds[i]->idempotency_key != NULL;
        if (ds[i]->result_code != 0) continue;
        pending[np++] = ds[i];
        store_pg_array_add_text(ids, ds[i]->execution_id);
        store_pg_array_add_text(bps, keyed ? ds[i]->blueprint : NULL);
        store_pg_array_add_text(keys, keyed ? ds[i]->idempotency_key : NULL);
    }
    vals[0] = store_pg_array_finish(ids);
    vals[1] = store_pg_array_finish(bps);
    vals[2] = store_pg_array_finish(keys);
    if (vals[0] == NULL || vals[1] == NULL || vals[2] == NULL) {
        free(pending);
        return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    }
    res = store_pg_exec(s, STMT_CONFLICTS, sql_conflicts, 3, vals);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = store_pg_fail(s, res, err, "store_append: conflict check");
        PQclear(res);
        free(pending);
        return rc;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t i = store_pg_int(res, r, 0) - 1;
        bool exists = !PQgetisnull(res, r, 1);
        int64_t proj_seq = store_pg_int(res, r, 1), max_seq = store_pg_int(res, r, 2);
        store_decision_t *d;
        int code = 0;

        bool key_held = PQgetvalue(res, r, 3)[0] == 't';

        assert(i >= 0 && (size_t)i < np);
        d = pending[i];
        if (d->is_new)
            code = (exists || max_seq != 0) ? CBM_ECONFLICT
                   : key_held               ? CBM_EEXIST
                                            : 0;
        else if (!exists) /* events without a projection: never written by us */
            code = max_seq == 0 ? CBM_ENOTFOUND : CBM_ECONFLICT;
        else if (proj_seq != d->expected_seq || max_seq != d->expected_seq)
            code = CBM_ECONFLICT;
        if (code != 0) {
            d->result_code = code;
            marked++;
            cbm_log_debug("store: decision for %s rejected (%s): expected seq %lld, stored %lld",
                          d->execution_id, cbm_err_name(code), (long long)d->expected_seq,
                          (long long)max_seq);
        }
    }
    PQclear(res);
    /* Keys claimed twice within the batch: the first claim stays pending. */
    for (size_t i = 0; i < np; i++) {
        if (pending[i]->result_code == 0 && key_taken_earlier(pending, i)) {
            pending[i]->result_code = CBM_EEXIST;
            marked++;
        }
    }
    free(pending);
    return marked;
}

/* The batch was refused by cbm_fence_shards (CB003): which pending
 * decisions' shards this engine no longer holds with their token? Marks
 * each CBM_EFENCED; returns how many (>= 0), or a CBM_E* code. */
static const char sql_lost_shards[] =
    "SELECT u.i FROM unnest($1::uuid[], $2::int8[]) WITH ORDINALITY AS u(id, tok, i)"
    " LEFT JOIN cbm_shard_leases l ON l.shard = cbm_shard_of(u.id)"
    " WHERE u.tok > 0 AND (l.owner IS DISTINCT FROM $3::uuid OR l.token IS DISTINCT FROM u.tok)";

static int classify_shards(store_t *s, store_decision_t *const *ds, size_t n, cbm_error_t *err)
{
    pg_array_t *ids = &s->cols[EV_ID], *toks = &s->cols[EV_SEQ];
    store_decision_t **pending = malloc(n * sizeof(*pending));
    const char *vals[3];
    PGresult *res;
    size_t np = 0;
    int marked = 0;

    if (pending == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    store_pg_array_reset(ids);
    store_pg_array_reset(toks);
    for (size_t i = 0; i < n; i++) {
        if (ds[i]->result_code != 0) continue;
        pending[np++] = ds[i];
        store_pg_array_add_text(ids, ds[i]->execution_id);
        store_pg_array_add_int(toks, ds[i]->shard_token);
    }
    vals[0] = store_pg_array_finish(ids);
    vals[1] = store_pg_array_finish(toks);
    vals[2] = s->fence;
    if (vals[0] == NULL || vals[1] == NULL) {
        free(pending);
        return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    }
    res = PQexecParams(s->conn, sql_lost_shards, 3, NULL, vals, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = store_pg_fail(s, res, err, "store_append: shard check");
        PQclear(res);
        free(pending);
        return rc;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t i = store_pg_int(res, r, 0) - 1;
        assert(i >= 0 && (size_t)i < np);
        pending[i]->result_code = CBM_EFENCED;
        marked++;
        cbm_log_debug("store: decision for %s refused: its shard is no longer held with token %lld",
                      pending[i]->execution_id, (long long)pending[i]->shard_token);
    }
    PQclear(res);
    free(pending);
    return marked;
}

/* After every round: 0, or which individual rejection to report. */
static int summarize(store_decision_t *const *ds, size_t n, cbm_error_t *err)
{
    size_t conflicts = 0, missing = 0, taken = 0, refused = 0, committed = 0, lost = 0;

    for (size_t i = 0; i < n; i++) {
        if (ds[i]->result_code == 0) committed++;
        else if (ds[i]->result_code == CBM_EFENCED) lost++;
        else if (ds[i]->result_code == CBM_ECONFLICT) conflicts++;
        else if (ds[i]->result_code == CBM_ENOTFOUND) missing++;
        else if (ds[i]->result_code == CBM_EEXIST) taken++;
        else if (ds[i]->result_code == CBM_EINVAL) refused++;
    }
    if (conflicts == 0 && missing == 0 && taken == 0 && refused == 0 && lost == 0) {
        cbm_error_clear(err); /* a retried round may have filled it */
        return 0;
    }
    if (lost > 0 && conflicts == 0 && missing == 0 && taken == 0 && refused == 0)
        return cbm_error_set(err, CBM_EFENCED,
                             "store_append: %zu of %zu decisions committed; %zu refused: their "
                             "shards are no longer this engine's with the token they were "
                             "loaded under",
                             committed, n, lost);
    return cbm_error_set(err,
                         refused > 0     ? CBM_EINVAL
                         : conflicts > 0 ? CBM_ECONFLICT
                         : missing > 0   ? CBM_ENOTFOUND
                                         : CBM_EEXIST,
                         "store_append: %zu of %zu decisions committed; %zu stale (seq conflict), "
                         "%zu for unknown executions, %zu with an idempotency key already taken, "
                         "%zu refused for their data",
                         committed, n, conflicts, missing, taken, refused);
}

/* A failure that one decision's data can cause (and that the same data
 * would cause again): a data exception (class 22, such as 22021, text that
 * is not UTF-8, or 22P05, \u0000 in jsonb), an integrity violation (23) no
 * stale seq explains, a program limit (54: a value too large to index). */
static bool data_error(const char *st)
{
    return strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 || strncmp(st, "54", 2) == 0;
}

/*
 * The batch failed for the data of some decision in it: find which, so the
 * others commit and only that one fails. The pending decisions are committed
 * in two halves, each through store_append, which halves again where it
 * fails the same way, down to the single decision at fault, marked
 * CBM_EINVAL. k bad decisions among n cost O(k log n) statements; a batch
 * with none costs nothing, so group commit keeps its one statement.
 */
static int isolate(store_t *s, store_decision_t *const *ds, size_t n, cbm_error_t *err)
{
    store_decision_t **pending = calloc(n ? n : 1, sizeof(*pending));
    size_t np = 0;
    int rc = 0;

    if (pending == NULL) return cbm_error_set(err, CBM_ENOMEM, "store_append: out of memory");
    for (size_t i = 0; i < n; i++)
        if (ds[i]->result_code == 0) pending[np++] = ds[i];
    if (np == 1) {
        pending[0]->result_code = CBM_EINVAL;
        cbm_log_error("store: decision for execution %s refused for its data: %s",
                      pending[0]->execution_id, err != NULL ? err->message : "");
    } else {
        size_t half = np / 2;
        int a = store_append(s, pending, half, err);
        if (a == CBM_EUNAVAIL || a == CBM_ENOMEM) {
            rc = a;
        } else {
            int b = store_append(s, pending + half, np - half, err);
            if (b == CBM_EUNAVAIL || b == CBM_ENOMEM) rc = b;
        }
        if (rc != 0) /* the ones not decided yet are retried by the caller */
            for (size_t i = 0; i < np; i++)
                if (pending[i]->result_code == 0 && i >= half) pending[i]->result_code = rc;
    }
    free(pending);
    return rc;
}

int store_append(store_t *s, store_decision_t *const *ds, size_t n, cbm_error_t *err)
{
    const char *vals[NCOLS_ + 1]; /* the columns, then $45: the fence */
    int serialization_retries = 0;

    assert(s != NULL && (ds != NULL || n == 0));
    for (size_t i = 0; i < n; i++) {
        check_decision(ds[i]);
        ds[i]->result_code = 0;
    }
    if (n == 0) return 0;

    for (;;) {
        PGresult *res;
        const char *st;
        int rc, marked;
        size_t pending = 0;

        for (size_t i = 0; i < n; i++) pending += ds[i]->result_code == 0;
        if (pending == 0) break;
        rc = build_params(s, ds, n, vals, err);
        if (rc != 0) {
            mark_pending(ds, n, rc);
            return rc;
        }
        vals[NCOLS_] = s->fence[0] != '\0' ? s->fence : NULL;
        res = store_pg_exec(s, STMT_APPEND, sql_append, NCOLS_ + 1, vals);
        if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
            PQclear(res);
            break; /* every pending decision committed */
        }
        rc = store_pg_fail(s, res, err, "store_append");
        st = store_pg_sqlstate(res);
        if (rc == CBM_ESTORE && strcmp(st, "CB002") == 0) {
            PQclear(res);
            mark_pending(ds, n, CBM_EFENCED);
            return cbm_error_set(err, CBM_EFENCED,
                                 "store_append: engine %s was fenced by another engine that "
                                 "found it dead; nothing of this batch was written",
                                 s->fence);
        }
        if (rc == CBM_ESTORE && strcmp(st, "CB003") == 0) {
            PQclear(res);
            marked = classify_shards(s, ds, n, err);
            if (marked > 0) continue;
            /* Nothing stale by now (cannot happen: a shard's token only
             * grows): refuse them all rather than loop. */
            mark_pending(ds, n, marked < 0 ? marked : CBM_EFENCED);
            return cbm_error_set(err, marked < 0 ? marked : CBM_EFENCED,
                                 "store_append: refused by the shard fence");
        }
        if (rc == CBM_ESTORE && (strcmp(st, "23505") == 0 || strcmp(st, "CB001") == 0)) {
            PQclear(res);
            marked = classify(s, ds, n, err);
            if (marked > 0) continue;
            if (marked < 0) {
                mark_pending(ds, n, marked);
                return marked;
            }
            /* A unique violation no stale seq explains (a duplicate task,
             * say): the fault of some decision's data. */
            if ((rc = isolate(s, ds, n, err)) != 0) return rc;
            break;
        }
        if (rc == CBM_ESTORE && data_error(st)) {
            PQclear(res);
            if ((rc = isolate(s, ds, n, err)) != 0) return rc;
            break;
        }
        if (rc == CBM_ESTORE && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) &&
            serialization_retries++ < 3) {
            PQclear(res);
            cbm_log_warn("store: %s; retrying the batch", err != NULL ? err->message : st);
            continue;
        }
        PQclear(res);
        mark_pending(ds, n, rc);
        return rc;
    }
    return summarize(ds, n, err);
}

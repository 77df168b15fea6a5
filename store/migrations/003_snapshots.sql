-- 003_snapshots: one snapshot of state per execution, so that loading an
-- execution with a long history reads the snapshot and only the events after
-- it (store_load_unfinished, store_load_execution). A decision may carry a
-- snapshot; the group commit upserts this row in the same statement as the
-- decision's events, under the projection's lock. `state` is json, not jsonb,
-- for the same reason as cbm_events.payload: the engine gets back the bytes it
-- wrote. `seq` is the seq of the last event the snapshot covers. Rows are not
-- deleted when an execution ends (store/store.h, docs/store.md).
CREATE TABLE cbm_snapshots (
    execution_id uuid   PRIMARY KEY,
    seq          bigint NOT NULL CHECK (seq >= 1),
    state        json   NOT NULL
);

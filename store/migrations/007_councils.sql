-- 007_councils: councils as data (docs/deliberation.md, section 1;
-- docs/store.md, "Councils"). One row per (name, version); the version is the
-- SHA-256 of the canonical JSON, which is kept as text, byte for byte, so
-- what is read back hashes to its version.
--   created_at  when this version was first stored
--   put_at      when a put last made it live (stored, or put again after a
--               delete): the latest version of a name is the live one with
--               the newest put_at
--   deleted_at  a soft delete: gone from lists and from "latest", still
--               readable by version (a running deliberation pinned it)
CREATE TABLE cbm_councils (
    name        text        NOT NULL,
    version     text        NOT NULL,
    definition  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    put_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    PRIMARY KEY (name, version)
);
CREATE INDEX cbm_councils_latest ON cbm_councils (name, put_at DESC) WHERE deleted_at IS NULL;

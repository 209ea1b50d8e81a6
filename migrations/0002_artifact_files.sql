-- The files of a verified version as they were fetched and checked against the signed manifest (by `rampart-check
-- fetch` in the artifact-verification Job), with the object store's version id where the store keeps versions, and
-- how the serving pods load the bytes. Written with the version's `verified` mark, in the same transaction.

CREATE TABLE version_files (
    version_id      BIGINT NOT NULL REFERENCES model_versions (id),
    -- Path relative to the model root, as in the signed manifest (`.` for a single-file model).
    path            TEXT NOT NULL CHECK (length(path) BETWEEN 1 AND 4096),
    sha256          TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes      BIGINT CHECK (size_bytes >= 0),
    -- The store's object version id (S3 VersionId, GCS generation...), when it has one.
    object_version  TEXT,
    PRIMARY KEY (version_id, path)
);

-- `verified-copy`: serving pods load only a copy their own init container verified; `before-traffic-only`: the
-- rollout opted out, serving pods read the URI themselves (recorded so reviewers see it). NULL: not recorded.
ALTER TABLE model_versions
    ADD COLUMN serving_verification TEXT CHECK (serving_verification IN ('verified-copy', 'before-traffic-only'));

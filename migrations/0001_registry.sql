-- Rampart registry: models, versions, aliases (with history), rollouts and the hash-chained event log.
-- Applied at start by rampart-registry (sqlx::migrate!). Never edit an applied migration; add a new one.

CREATE TABLE models (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 253),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Head of this model's event chain: the last sequence number and its hash. Appends lock this row, so the chain
    -- of one model is written by one transaction at a time and never forks.
    head_seq        BIGINT NOT NULL DEFAULT 0,
    head_hash       BYTEA NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
);

CREATE TABLE model_versions (
    id              BIGSERIAL PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES models (id),
    version         TEXT NOT NULL CHECK (length(version) BETWEEN 1 AND 253),
    uri             TEXT NOT NULL,
    -- Model digest: sha256:<hex> over the model's per-file sha256 digests (the model-signing subject digest).
    digest          TEXT NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    size_bytes      BIGINT CHECK (size_bytes >= 0),
    format          TEXT,
    tensor_contract JSONB,
    signature_bundle TEXT,
    signer_key_id   TEXT,
    verified_at     TIMESTAMPTZ,
    status          TEXT NOT NULL DEFAULT 'unverified'
                    CHECK (status IN ('unverified', 'verified', 'rejected', 'retired')),
    status_reason   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (model_id, version),
    CHECK (status <> 'verified' OR verified_at IS NOT NULL)
);

CREATE TABLE aliases (
    model_id        BIGINT NOT NULL REFERENCES models (id),
    alias           TEXT NOT NULL CHECK (length(alias) BETWEEN 1 AND 63),
    version_id      BIGINT NOT NULL REFERENCES model_versions (id),
    moved_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_id, alias)
);

CREATE TABLE alias_moves (
    id              BIGSERIAL PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES models (id),
    alias           TEXT NOT NULL,
    from_version_id BIGINT REFERENCES model_versions (id),
    to_version_id   BIGINT NOT NULL REFERENCES model_versions (id),
    moved_at        TIMESTAMPTZ NOT NULL,
    actor           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    rollout_id      BIGINT
);
CREATE INDEX alias_moves_by_alias ON alias_moves (model_id, alias, id);

CREATE TABLE rollouts (
    id              BIGSERIAL PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES models (id),
    -- The ModelRollout's metadata.uid: the controller's idempotency key (a restart finds the same rollout).
    uid             TEXT NOT NULL UNIQUE,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    candidate_version_id BIGINT NOT NULL REFERENCES model_versions (id),
    baseline_version_id  BIGINT REFERENCES model_versions (id),
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    outcome         TEXT CHECK (outcome IN ('promoted', 'rolled_back', 'failed', 'aborted')),
    outcome_reason  TEXT,
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE INDEX rollouts_by_model ON rollouts (model_id, id);

ALTER TABLE alias_moves ADD FOREIGN KEY (rollout_id) REFERENCES rollouts (id);

-- Append-only audit log. Each row's hash = sha256(prev_hash || canonical row content); prev_hash is the hash of the
-- row before it (by seq) of the same model, the first row's prev_hash is 32 zero bytes.
CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    model_id        BIGINT NOT NULL REFERENCES models (id),
    seq             BIGINT NOT NULL CHECK (seq >= 1),
    rollout_id      BIGINT REFERENCES rollouts (id),
    kind            TEXT NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    -- Canonical JSON text (sorted keys), stored as text so the hashed bytes are exactly the stored bytes.
    payload         TEXT NOT NULL,
    -- Optional caller key that makes a retried append a no-op (e.g. `<rollout uid>/step/3`).
    idempotency_key TEXT,
    prev_hash       BYTEA NOT NULL CHECK (length(prev_hash) = 32),
    hash            BYTEA NOT NULL CHECK (length(hash) = 32),
    UNIQUE (model_id, seq),
    UNIQUE (model_id, idempotency_key)
);
CREATE INDEX events_by_rollout ON events (rollout_id, seq) WHERE rollout_id IS NOT NULL;

-- The log is append-only: refuse UPDATE and DELETE unless an operator disables the trigger on purpose (which
-- verify_chain would then expose).
CREATE FUNCTION rampart_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rampart events are append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION rampart_events_append_only();

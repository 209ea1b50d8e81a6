-- Models owned by a namespace, and one registry rollout row per attempt (rampart retry).
--
-- Ownership: the first namespace to register a model (or start a rollout of it) owns it; a rollout in another
-- namespace that registers a version of it, verifies one or starts a rollout of it is refused (RegistryError::
-- ModelOwned). Models registered before this migration are owned by the namespace of their first rollout; a model
-- with no rollout yet is claimed by the next namespace that writes it. Writes without a namespace (an operator's CLI)
-- are not restricted.
CREATE TABLE model_owners (
    model_id        BIGINT PRIMARY KEY REFERENCES models (id),
    namespace       TEXT NOT NULL CHECK (length(namespace) BETWEEN 1 AND 253),
    claimed_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO model_owners (model_id, namespace, claimed_at)
SELECT DISTINCT ON (model_id) model_id, namespace, started_at
FROM rollouts
ORDER BY model_id, started_at, id;

-- Attempts: `rampart retry` starts a ModelRollout (same uid) again; each attempt is its own row, numbered from 1,
-- with the retry request that started it (NULL for the first). Writes by uid go to the latest attempt.
ALTER TABLE rollouts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1);
ALTER TABLE rollouts ADD COLUMN retry_key TEXT CHECK (retry_key IS NULL OR length(retry_key) BETWEEN 1 AND 253);
ALTER TABLE rollouts DROP CONSTRAINT rollouts_uid_key;
ALTER TABLE rollouts ADD CONSTRAINT rollouts_uid_attempt_key UNIQUE (uid, attempt);
CREATE UNIQUE INDEX rollouts_uid_retry_key ON rollouts (uid, retry_key) WHERE retry_key IS NOT NULL;

-- Rampart notifications: the durable delivery queue behind CloudEvents and Slack-style webhooks. One row per event
-- and sink; a row is delivered at least once, retried with backoff until a sink answers 2xx, and survives controller
-- restarts. Sink URLs are not stored here (a Slack URL is a credential): a row names its sink, and the URL is read
-- from the controller's configuration or the namespace's Secret when the row is sent.

CREATE TABLE notification_deliveries (
    -- The event's stable id (from the rollout uid, its attempt and the transition): a re-enqueue is a no-op.
    event_id        TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    -- Which sink: controller/cloudevents, controller/slack, namespace/cloudevents, namespace/slack.
    sink            TEXT NOT NULL CHECK (length(sink) BETWEEN 1 AND 100),
    namespace       TEXT NOT NULL,
    rollout         TEXT NOT NULL,
    -- The event as recorded when it was queued (the analysis detail is frozen at that moment).
    event           JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    -- Set when the controller gave up (the retry window passed, or the sink was removed from the configuration).
    abandoned_at    TIMESTAMPTZ,
    PRIMARY KEY (event_id, sink)
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;

//! The notification queue: events the controller owes to CloudEvents and Slack-style sinks, one row per event and
//! sink, kept until a sink acknowledges them. Enqueueing is idempotent by the event's stable id, so an event derived
//! again after a restart is not queued twice; claiming uses `FOR UPDATE SKIP LOCKED`, so two replicas never send the
//! same row at once. Runtime queries (no offline query data needed).

use std::time::Duration;

use serde_json::Value;
use sqlx::Row;

use crate::{Registry, Result, Timestamp};

/// An event to queue for some sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The event's stable id.
    pub event_id: String,
    /// Namespace of the rollout.
    pub namespace: String,
    /// Name of the rollout.
    pub rollout: String,
    /// The event itself, as the controller will render it.
    pub event: Value,
}

/// A row claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub event_id: String,
    pub sink: String,
    pub namespace: String,
    pub rollout: String,
    pub event: Value,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: Timestamp,
}

/// Where one delivery stands (for tests and operators).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub sink: String,
    pub namespace: String,
    pub rollout: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub abandoned_at: Option<Timestamp>,
}

impl Registry {
    /// Queues `notification` for each of `sinks`; rows that already exist (same event id and sink) are left alone.
    /// Returns how many rows were new.
    pub async fn enqueue_notification(&self, notification: &NewNotification, sinks: &[String]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for sink in sinks {
            inserted += sqlx::query(
                "INSERT INTO notification_deliveries (event_id, sink, namespace, rollout, event)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id, sink) DO NOTHING",
            )
            .bind(&notification.event_id)
            .bind(sink)
            .bind(&notification.namespace)
            .bind(&notification.rollout)
            .bind(&notification.event)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Claims up to `limit` rows that are due, oldest first, and pushes their next attempt `lease` into the future,
    /// so a crash mid-delivery retries them after the lease and another replica leaves them alone meanwhile.
    pub async fn claim_notifications(&self, limit: i64, lease: Duration) -> Result<Vec<PendingDelivery>> {
        let rows = sqlx::query(
            "UPDATE notification_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
             FROM (SELECT event_id, sink FROM notification_deliveries
                   WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= now()
                   ORDER BY created_at, event_id LIMIT $1 FOR UPDATE SKIP LOCKED) due
             WHERE d.event_id = due.event_id AND d.sink = due.sink
             RETURNING d.event_id, d.sink, d.namespace, d.rollout, d.event, d.attempts, d.created_at",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .into_iter()
            .map(|row| {
                Ok(PendingDelivery {
                    event_id: row.try_get("event_id")?,
                    sink: row.try_get("sink")?,
                    namespace: row.try_get("namespace")?,
                    rollout: row.try_get("rollout")?,
                    event: row.try_get("event")?,
                    attempts: row.try_get("attempts")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
        Ok(claimed)
    }

    /// Records that the sink acknowledged the row.
    pub async fn mark_notification_delivered(&self, event_id: &str, sink: &str) -> Result<()> {
        sqlx::query(
            "UPDATE notification_deliveries SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
             WHERE event_id = $1 AND sink = $2",
        )
        .bind(event_id)
        .bind(sink)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt: retried after `retry_in`, or abandoned when it is None.
    pub async fn mark_notification_failed(
        &self,
        event_id: &str,
        sink: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE notification_deliveries
             SET attempts = attempts + 1, last_error = $3,
                 next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                        ELSE now() + make_interval(secs => $4::float8) END,
                 abandoned_at = CASE WHEN $4::float8 IS NULL THEN now() ELSE NULL END
             WHERE event_id = $1 AND sink = $2",
        )
        .bind(event_id)
        .bind(sink)
        .bind(error)
        .bind(retry_in.map(|d| d.as_secs_f64()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a claimed row back without counting an attempt (it was not tried: an earlier row of the same sink
    /// failed, and rows of one sink go in order).
    pub async fn defer_notification(&self, event_id: &str, sink: &str, after: Duration) -> Result<()> {
        sqlx::query(
            "UPDATE notification_deliveries SET next_attempt_at = now() + make_interval(secs => $3)
             WHERE event_id = $1 AND sink = $2 AND delivered_at IS NULL",
        )
        .bind(event_id)
        .bind(sink)
        .bind(after.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Rows not yet delivered nor abandoned.
    pub async fn notification_backlog(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT count(*) AS n FROM notification_deliveries WHERE delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Every delivery of a rollout's events (by namespace and name), oldest first.
    pub async fn notification_deliveries(&self, namespace: &str, rollout: &str) -> Result<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT event_id, sink, namespace, rollout, attempts, last_error, delivered_at, abandoned_at
             FROM notification_deliveries WHERE namespace = $1 AND rollout = $2 ORDER BY created_at, event_id, sink",
        )
        .bind(namespace)
        .bind(rollout)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DeliveryRecord {
                    event_id: row.try_get("event_id")?,
                    sink: row.try_get("sink")?,
                    namespace: row.try_get("namespace")?,
                    rollout: row.try_get("rollout")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    delivered_at: row.try_get("delivered_at")?,
                    abandoned_at: row.try_get("abandoned_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}

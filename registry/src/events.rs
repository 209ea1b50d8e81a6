//! The append-only event log: appending under the model's lock, reading a model's or a rollout's trail, and checking
//! the hash chain.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgConnection;

use crate::chain::{ChainReport, ChainRow, RowContent, canonical_json, find_break, row_hash};
use crate::records::{EventKind, EventRecord, NewEvent};
use crate::{LATEST_ATTEMPT_ID, LockedModel, Registry, RegistryError, Result, lock_model, now};

/// Appends events to a locked model's chain (one INSERT for the batch) and advances the model's head. Events whose
/// idempotency key is already in the log are not appended again; the stored event is returned in their place.
pub(crate) async fn append_locked(
    conn: &mut PgConnection,
    model: &mut LockedModel,
    events: &[NewEvent],
) -> Result<Vec<EventRecord>> {
    let mut rollout_ids: HashMap<String, i64> = HashMap::new();
    let mut results: Vec<Option<EventRecord>> = Vec::with_capacity(events.len());
    let mut seqs = Vec::new();
    let mut rollouts = Vec::new();
    let mut kinds = Vec::new();
    let mut times = Vec::new();
    let mut payloads = Vec::new();
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut prev_hashes = Vec::new();
    let mut hashes = Vec::new();
    let mut seen_keys: HashMap<String, usize> = HashMap::new();
    for event in events {
        if let Some(key) = &event.idempotency_key {
            if let Some(existing) = event_by_key(conn, model, key).await? {
                results.push(Some(existing));
                continue;
            }
            if seen_keys.contains_key(key) {
                return Err(RegistryError::InvalidInput {
                    field: "idempotency_key",
                    problem: format!("`{key}` appears twice in one batch"),
                });
            }
            seen_keys.insert(key.clone(), results.len());
        }
        let rollout_id = match &event.rollout_uid {
            None => 0,
            Some(uid) => match rollout_ids.get(uid) {
                Some(id) => *id,
                None => {
                    let id = sqlx::query_scalar::<_, i64>(LATEST_ATTEMPT_ID)
                        .bind(uid)
                        .bind(model.id)
                        .fetch_optional(&mut *conn)
                        .await?
                        .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.clone() })?;
                    rollout_ids.insert(uid.clone(), id);
                    id
                }
            },
        };
        let seq = model.head_seq + 1;
        let occurred_at = now();
        let payload = canonical_json(&event.payload);
        let kind = event.kind.as_str().to_string();
        let content = RowContent {
            model_id: model.id,
            seq,
            rollout_id,
            kind: &kind,
            occurred_at_micros: occurred_at.timestamp_micros(),
            payload: &payload,
            idempotency_key: event.idempotency_key.as_deref(),
        };
        let hash = row_hash(&model.head_hash, &content);
        results.push(Some(EventRecord {
            model: model.name.clone(),
            seq,
            rollout_uid: event.rollout_uid.clone(),
            kind: event.kind.clone(),
            occurred_at,
            payload: event.payload.clone(),
            idempotency_key: event.idempotency_key.clone(),
            prev_hash: hex(&model.head_hash),
            hash: hex(&hash),
        }));
        seqs.push(seq);
        rollouts.push(rollout_id);
        kinds.push(kind);
        times.push(occurred_at);
        payloads.push(payload);
        keys.push(event.idempotency_key.clone());
        prev_hashes.push(model.head_hash.clone());
        hashes.push(hash.to_vec());
        model.head_seq = seq;
        model.head_hash = hash.to_vec();
    }
    if !seqs.is_empty() {
        // Empty strings stand for "no idempotency key" in the array (NULLIF turns them back into NULL).
        let key_texts: Vec<String> = keys.iter().map(|key| key.clone().unwrap_or_default()).collect();
        sqlx::query!(
            "INSERT INTO events (model_id, seq, rollout_id, kind, occurred_at, payload, idempotency_key, prev_hash, hash)
             SELECT $1, t.seq, NULLIF(t.rollout_id, 0), t.kind, t.occurred_at, t.payload, NULLIF(t.key, ''),
                    t.prev_hash, t.hash
             FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                         $8::bytea[], $9::bytea[])
                  AS t(seq, rollout_id, kind, occurred_at, payload, key, prev_hash, hash)",
            model.id,
            &seqs,
            &rollouts,
            &kinds,
            &times,
            &payloads,
            &key_texts,
            &prev_hashes,
            &hashes,
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE models SET head_seq = $2, head_hash = $3 WHERE id = $1",
            model.id,
            model.head_seq,
            &model.head_hash
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(results.into_iter().flatten().collect())
}

async fn event_by_key(conn: &mut PgConnection, model: &LockedModel, key: &str) -> Result<Option<EventRecord>> {
    let row = sqlx::query!(
        r#"SELECT e.seq, r.uid AS "rollout_uid?", e.kind, e.occurred_at, e.payload, e.idempotency_key,
                  e.prev_hash, e.hash
           FROM events e LEFT JOIN rollouts r ON r.id = e.rollout_id
           WHERE e.model_id = $1 AND e.idempotency_key = $2"#,
        model.id,
        key
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| EventRecord {
        model: model.name.clone(),
        seq: row.seq,
        rollout_uid: row.rollout_uid,
        kind: EventKind::parse(&row.kind),
        occurred_at: row.occurred_at,
        payload: parse_payload(&row.payload),
        idempotency_key: row.idempotency_key,
        prev_hash: hex(&row.prev_hash),
        hash: hex(&row.hash),
    }))
}

/// A stored payload back as JSON (a row edited into non-JSON comes back as a string rather than failing the read).
pub(crate) fn parse_payload(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Rows read per round trip by [`Registry::verify_chain`].
const CHAIN_PAGE: i64 = 5_000;

impl Registry {
    /// Appends one event to a model's log (the model must exist).
    pub async fn append_event(&self, model: &str, event: &NewEvent) -> Result<EventRecord> {
        let mut records = self.append_events(model, std::slice::from_ref(event)).await?;
        records.pop().ok_or_else(|| RegistryError::InvalidInput { field: "event", problem: "nothing appended".into() })
    }

    /// Appends several events in one transaction (one lock, one INSERT): all or none.
    pub async fn append_events(&self, model: &str, events: &[NewEvent]) -> Result<Vec<EventRecord>> {
        let mut tx = self.pool.begin().await?;
        let mut locked = lock_model(&mut tx, model).await?;
        let records = append_locked(&mut tx, &mut locked, events).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// A model's events, newest first: at most `limit`, and only those before `before_seq` when given (paging).
    pub async fn model_history(&self, model: &str, limit: i64, before_seq: Option<i64>) -> Result<Vec<EventRecord>> {
        let model_id = self.model_id(model).await?;
        let rows = sqlx::query!(
            r#"SELECT e.seq, r.uid AS "rollout_uid?", e.kind, e.occurred_at, e.payload, e.idempotency_key,
                      e.prev_hash, e.hash
               FROM events e LEFT JOIN rollouts r ON r.id = e.rollout_id
               WHERE e.model_id = $1 AND e.seq < $2
               ORDER BY e.seq DESC
               LIMIT $3"#,
            model_id,
            before_seq.unwrap_or(i64::MAX),
            limit.max(0)
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| EventRecord {
                model: model.to_string(),
                seq: row.seq,
                rollout_uid: row.rollout_uid,
                kind: EventKind::parse(&row.kind),
                occurred_at: row.occurred_at,
                payload: parse_payload(&row.payload),
                idempotency_key: row.idempotency_key,
                prev_hash: hex(&row.prev_hash),
                hash: hex(&row.hash),
            })
            .collect())
    }

    /// The full event trail of one rollout, oldest first.
    pub async fn rollout_events(&self, uid: &str) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query!(
            r#"SELECT m.name AS model, e.seq AS "seq?", r.uid, e.kind AS "kind?", e.occurred_at AS "occurred_at?",
                      e.payload AS "payload?", e.idempotency_key, e.prev_hash AS "prev_hash?", e.hash AS "hash?"
               FROM rollouts r
               JOIN models m ON m.id = r.model_id
               LEFT JOIN events e ON e.rollout_id = r.id
               WHERE r.uid = $1
               ORDER BY e.seq"#,
            uid
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(RegistryError::RolloutNotFound { uid: uid.to_string() });
        }
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(EventRecord {
                    model: row.model,
                    seq: row.seq?,
                    rollout_uid: Some(row.uid),
                    kind: EventKind::parse(&row.kind?),
                    occurred_at: row.occurred_at?,
                    payload: parse_payload(&row.payload?),
                    idempotency_key: row.idempotency_key,
                    prev_hash: hex(&row.prev_hash?),
                    hash: hex(&row.hash?),
                })
            })
            .collect())
    }

    /// Checks a model's whole chain and reports the first row that was edited, deleted or reordered.
    pub async fn verify_chain(&self, model: &str) -> Result<ChainReport> {
        let head = sqlx::query!("SELECT id, head_seq, head_hash FROM models WHERE name = $1", model)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::ModelNotFound { model: model.to_string() })?;
        let mut rows: Vec<ChainRow> = Vec::new();
        let mut after = 0i64;
        loop {
            let page = sqlx::query!(
                "SELECT seq, rollout_id, kind, occurred_at, payload, idempotency_key, prev_hash, hash
                 FROM events WHERE model_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                head.id,
                after,
                CHAIN_PAGE
            )
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let full = i64::try_from(page.len()).unwrap_or(i64::MAX) == CHAIN_PAGE;
            for row in page {
                let content = RowContent {
                    model_id: head.id,
                    seq: row.seq,
                    rollout_id: row.rollout_id.unwrap_or(0),
                    kind: &row.kind,
                    occurred_at_micros: row.occurred_at.timestamp_micros(),
                    payload: &row.payload,
                    idempotency_key: row.idempotency_key.as_deref(),
                };
                let recomputed = row_hash(&row.prev_hash, &content);
                rows.push(ChainRow { seq: row.seq, prev_hash: row.prev_hash, hash: row.hash, recomputed });
            }
            if !full {
                break;
            }
        }
        let first_break = find_break(&rows, head.head_seq, &head.head_hash);
        Ok(ChainReport {
            model: model.to_string(),
            rows_checked: u64::try_from(rows.len()).unwrap_or(u64::MAX),
            head_seq: head.head_seq,
            head_hash: hex(&head.head_hash),
            first_break,
        })
    }

    pub(crate) async fn model_id(&self, model: &str) -> Result<i64> {
        sqlx::query_scalar!("SELECT id FROM models WHERE name = $1", model)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::ModelNotFound { model: model.to_string() })
    }
}

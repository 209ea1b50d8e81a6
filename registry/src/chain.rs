//! The hash chain of a model's event log: how a row's hash is computed, and the pure check that finds the first row
//! that was edited, deleted or moved.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of a model's first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Domain separation so a row hash can never be confused with another sha256 in the system.
const DOMAIN: &[u8] = b"rampart-event-v1";

/// The content of one event row that its hash covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowContent<'a> {
    pub model_id: i64,
    pub seq: i64,
    /// 0 when the event belongs to no rollout.
    pub rollout_id: i64,
    pub kind: &'a str,
    pub occurred_at_micros: i64,
    pub payload: &'a str,
    pub idempotency_key: Option<&'a str>,
}

/// sha256(prev_hash || domain || length-prefixed fields).
pub(crate) fn row_hash(prev_hash: &[u8], row: &RowContent<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(DOMAIN);
    hasher.update(row.model_id.to_be_bytes());
    hasher.update(row.seq.to_be_bytes());
    hasher.update(row.rollout_id.to_be_bytes());
    field(&mut hasher, row.kind.as_bytes());
    hasher.update(row.occurred_at_micros.to_be_bytes());
    field(&mut hasher, row.payload.as_bytes());
    match row.idempotency_key {
        None => hasher.update([0u8]),
        Some(key) => {
            hasher.update([1u8]);
            field(&mut hasher, key.as_bytes());
        }
    }
    hasher.finalize().into()
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
    hasher.update(bytes);
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so the same value always gives the
/// same bytes whatever map type serde_json was built with.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One stored row, reduced to what the chain check needs.
#[derive(Debug, Clone)]
pub(crate) struct ChainRow {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The hash recomputed from the row's stored content and stored `prev_hash`.
    pub recomputed: [u8; 32],
}

/// What is wrong with a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainBreakKind {
    /// A row's content no longer matches its hash.
    Edited,
    /// One or more rows are missing.
    Deleted,
    /// A row is not where its link says it belongs.
    Reordered,
}

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBreak {
    /// The sequence number of the first bad row (for a deletion at the end: the first missing one).
    pub seq: i64,
    pub kind: ChainBreakKind,
    pub reason: String,
}

/// The result of [`crate::Registry::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub model: String,
    pub rows_checked: u64,
    /// Head recorded on the model (sequence number and hex hash of the last appended row).
    pub head_seq: i64,
    pub head_hash: String,
    /// `None` when the chain is intact.
    pub first_break: Option<ChainBreak>,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Walks rows in `seq` order and returns the first break. `head_seq`/`head_hash` are what the model row says the end
/// of the chain is, which exposes rows deleted at the end.
pub(crate) fn find_break(rows: &[ChainRow], head_seq: i64, head_hash: &[u8]) -> Option<ChainBreak> {
    let by_hash: HashMap<&[u8], i64> = rows.iter().map(|row| (row.hash.as_slice(), row.seq)).collect();
    let mut expected_seq = 1;
    let mut previous_hash: &[u8] = &GENESIS_HASH;
    for row in rows {
        if row.seq != expected_seq {
            let missing = if row.seq == expected_seq + 1 {
                format!("row {expected_seq} is missing")
            } else {
                format!("rows {expected_seq}..{} are missing", row.seq - 1)
            };
            return Some(ChainBreak { seq: expected_seq, kind: ChainBreakKind::Deleted, reason: missing });
        }
        if row.prev_hash.as_slice() != previous_hash {
            return Some(match by_hash.get(row.prev_hash.as_slice()) {
                Some(&linked) if linked != row.seq - 1 => ChainBreak {
                    seq: row.seq,
                    kind: ChainBreakKind::Reordered,
                    reason: format!(
                        "row {} links to row {linked} instead of row {}: rows were reordered",
                        row.seq,
                        row.seq - 1
                    ),
                },
                _ => ChainBreak {
                    seq: row.seq,
                    kind: ChainBreakKind::Deleted,
                    reason: format!(
                        "row {} does not link to row {}: a row before it was deleted, or row {} was rewritten together with its hash",
                        row.seq,
                        row.seq - 1,
                        row.seq - 1
                    ),
                },
            });
        }
        if row.recomputed.as_slice() != row.hash.as_slice() {
            return Some(ChainBreak {
                seq: row.seq,
                kind: ChainBreakKind::Edited,
                reason: format!("row {} was edited: its content no longer matches its hash", row.seq),
            });
        }
        previous_hash = &row.hash;
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    if last_seq < head_seq {
        let reason = if last_seq + 1 == head_seq {
            format!("row {head_seq}, the last one appended, is missing")
        } else {
            format!("rows {}..{head_seq} at the end of the log are missing", last_seq + 1)
        };
        return Some(ChainBreak { seq: last_seq + 1, kind: ChainBreakKind::Deleted, reason });
    }
    if last_seq > head_seq {
        return Some(ChainBreak {
            seq: head_seq + 1,
            kind: ChainBreakKind::Edited,
            reason: format!(
                "rows after {head_seq} were added outside the registry (the model's head is at {head_seq})"
            ),
        });
    }
    if last_seq > 0 && previous_hash != head_hash {
        return Some(ChainBreak {
            seq: last_seq,
            kind: ChainBreakKind::Edited,
            reason: format!("row {last_seq} does not match the head hash recorded on the model: it was rewritten"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut rows = Vec::new();
        let mut prev = GENESIS_HASH.to_vec();
        for seq in 1..=n {
            let payload = format!("{{\"n\":{seq}}}");
            let content = RowContent {
                model_id: 1,
                seq,
                rollout_id: 0,
                kind: "note",
                occurred_at_micros: seq,
                payload: &payload,
                idempotency_key: None,
            };
            let hash = row_hash(&prev, &content);
            rows.push(ChainRow { seq, prev_hash: prev.clone(), hash: hash.to_vec(), recomputed: hash });
            prev = hash.to_vec();
        }
        rows
    }

    fn head(rows: &[ChainRow]) -> (i64, Vec<u8>) {
        rows.last().map(|row| (row.seq, row.hash.clone())).unwrap_or((0, GENESIS_HASH.to_vec()))
    }

    #[test]
    fn intact_chain_has_no_break() {
        let rows = chain(5);
        let (seq, hash) = head(&rows);
        assert_eq!(find_break(&rows, seq, &hash), None);
        assert_eq!(find_break(&[], 0, &GENESIS_HASH), None);
    }

    #[test]
    fn edited_row_is_reported_as_edited() {
        let mut rows = chain(5);
        let (seq, hash) = head(&rows);
        rows[2].recomputed = [7; 32];
        let found = find_break(&rows, seq, &hash).map(|b| (b.seq, b.kind));
        assert_eq!(found, Some((3, ChainBreakKind::Edited)));
    }

    #[test]
    fn deleted_rows_in_the_middle_and_at_the_end_are_reported() {
        let mut rows = chain(5);
        let (seq, hash) = head(&rows);
        rows.remove(1);
        let found = find_break(&rows, seq, &hash).map(|b| (b.seq, b.kind));
        assert_eq!(found, Some((2, ChainBreakKind::Deleted)));

        let mut rows = chain(5);
        rows.pop();
        let found = find_break(&rows, seq, &hash).map(|b| (b.seq, b.kind));
        assert_eq!(found, Some((5, ChainBreakKind::Deleted)));
    }

    #[test]
    fn swapped_rows_are_reported_as_reordered() {
        let mut rows = chain(5);
        let (seq, hash) = head(&rows);
        // Swap the positions (seq numbers) of rows 3 and 4.
        rows[2].seq = 4;
        rows[3].seq = 3;
        rows.swap(2, 3);
        let found = find_break(&rows, seq, &hash).map(|b| (b.seq, b.kind));
        assert_eq!(found, Some((3, ChainBreakKind::Reordered)));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":0,"y":1}],"c":"x"}}"#).unwrap_or_default();
        assert_eq!(canonical_json(&value), r#"{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}"#);
    }
}

//! The verdict a check Job leaves in its Pod's termination message, kept under the 4 KiB the kubelet allows.
//!
//! Used by both `rampart-check contract` and `rampart-check smoke-eval`, so the controller reads one
//! shape from `Pod.status.containerStatuses[].state.terminated.message`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where Kubernetes mounts the termination message file by default.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// Environment variable that overrides the termination message path.
pub const TERMINATION_LOG_ENV: &str = "RAMPART_TERMINATION_LOG";
/// The JSON is always shorter than this many bytes (the kubelet keeps at most 4096).
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
/// Longest single reason or summary kept, in bytes.
const MAX_REASON_BYTES: usize = 480;

/// A check's verdict in the short, uniform form the controller reads back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminationMessage {
    /// Which check: `contract` or `smoke-eval`.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// One line for people.
    pub summary: String,
    /// Why it failed, most important first (possibly cut short; the last entry then says how many were left out).
    pub reasons: Vec<String>,
    /// What a passed `fetch` read: each file with its digest and the store's object version id. Left out whole when
    /// it does not fit the message (the signed manifest still lists every file's digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRead>,
    /// What a smoke run's loss did: up to [`MAX_CURVE_POINTS`] `[step, loss]` pairs sampled evenly over the run
    /// (first and last included; `null` for a loss that was not finite), for charts. Left out when it does not fit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<(u64, Option<f64>)>,
}

/// The most points of a loss curve a termination message carries.
pub const MAX_CURVE_POINTS: usize = 40;

/// Samples `(step, loss)` pairs evenly down to at most `max` points, keeping the first and the last; a loss that is not
/// finite becomes `None`, and finite ones are rounded to 6 significant digits (enough for a chart, short on the wire).
pub fn sample_curve(points: &[(u64, f64)], max: usize) -> Vec<(u64, Option<f64>)> {
    let n = points.len();
    if n == 0 || max == 0 {
        return Vec::new();
    }
    let take = n.min(max);
    (0..take)
        .map(|i| if take == 1 { 0 } else { i * (n - 1) / (take - 1) })
        .map(|index| {
            let (step, loss) = points[index];
            let loss = loss.is_finite().then(|| {
                if loss == 0.0 {
                    return 0.0;
                }
                let digits = 6 - 1 - loss.abs().log10().floor() as i32;
                let scale = 10f64.powi(digits.clamp(-300, 300));
                (loss * scale).round() / scale
            });
            (step, loss.filter(|l| l.is_finite()))
        })
        .collect()
}

/// One file a passed `fetch` verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRead {
    /// Path relative to the model root (`.` for a single-file model).
    pub name: String,
    /// Hex sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The store's object version id, when it keeps versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `...`.
pub fn truncate_on_char_boundary(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn json_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len().saturating_mul(6), |json| json.len())
}

impl TerminationMessage {
    /// Compact JSON, guaranteed shorter than [`MAX_TERMINATION_MESSAGE_BYTES`]: long reasons are cut,
    /// and reasons that do not fit are replaced by one `... and N more` entry.
    pub fn to_json(&self) -> String {
        let summary = truncate_on_char_boundary(&self.summary, MAX_REASON_BYTES);
        let mut fitted = TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: truncate_on_char_boundary(&self.check, 64),
            passed: self.passed,
            summary,
            reasons: Vec::new(),
        };
        // Room for the envelope plus a closing "... and N more reasons" entry.
        let envelope = serde_json::to_string(&fitted).map_or(MAX_TERMINATION_MESSAGE_BYTES, |json| json.len());
        let budget = MAX_TERMINATION_MESSAGE_BYTES.saturating_sub(envelope + 64);
        let mut used = 0;
        for reason in &self.reasons {
            let reason = truncate_on_char_boundary(reason, MAX_REASON_BYTES);
            let cost = json_len(&reason) + 1;
            if used + cost > budget {
                break;
            }
            used += cost;
            fitted.reasons.push(reason);
        }
        let left_out = self.reasons.len() - fitted.reasons.len();
        if left_out > 0 {
            fitted.reasons.push(format!("... and {left_out} more reason(s)"));
        }
        if !self.curve.is_empty() {
            let with_curve = TerminationMessage { curve: self.curve.clone(), ..fitted.clone() };
            if serde_json::to_string(&with_curve).is_ok_and(|json| json.len() < MAX_TERMINATION_MESSAGE_BYTES) {
                fitted = with_curve;
            }
        }
        if !self.files.is_empty() {
            let with_files = TerminationMessage { files: self.files.clone(), ..fitted.clone() };
            if serde_json::to_string(&with_files).is_ok_and(|json| json.len() < MAX_TERMINATION_MESSAGE_BYTES) {
                fitted = with_files;
            }
        }
        let mut json = serde_json::to_string(&fitted).unwrap_or_default();
        // Escaping can only have been underestimated for control characters; drop reasons until it fits.
        while json.len() >= MAX_TERMINATION_MESSAGE_BYTES && fitted.reasons.pop().is_some() {
            json = serde_json::to_string(&fitted).unwrap_or_default();
        }
        if json.len() >= MAX_TERMINATION_MESSAGE_BYTES {
            fitted.summary = truncate_on_char_boundary(&fitted.summary, 64);
            json = serde_json::to_string(&fitted).unwrap_or_default();
        }
        json
    }
}

/// Where the termination message should go, if anywhere.
///
/// An explicit path (flag or [`TERMINATION_LOG_ENV`]) is used when its directory exists. Without one,
/// [`DEFAULT_TERMINATION_LOG`] is used only when that file already exists, which is the case in a
/// Kubernetes container (the kubelet mounts it) and not on a workstation, where `/dev` exists but
/// creating files in it would be wrong.
pub fn termination_log_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            parent.is_dir().then(|| path.to_path_buf())
        }
        None => {
            let default = Path::new(DEFAULT_TERMINATION_LOG);
            default.is_file().then(|| default.to_path_buf())
        }
    }
}

/// Writes `message` to the termination log chosen by [`termination_log_path`].
///
/// Returns the path written, or `None` when there is nowhere to write.
pub fn write_termination_message(
    explicit: Option<&Path>,
    message: &TerminationMessage,
) -> std::io::Result<Option<PathBuf>> {
    let Some(path) = termination_log_path(explicit) else { return Ok(None) };
    std::fs::write(&path, message.to_json())?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stays_under_four_kib_with_thousands_of_long_multibyte_reasons() {
        let message = TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: "contract".into(),
            passed: false,
            summary: "é".repeat(5000),
            reasons: (0..5000).map(|i| format!("reason {i} {}", "ü\u{1}\"".repeat(300))).collect(),
        };
        let json = message.to_json();
        assert!(json.len() < MAX_TERMINATION_MESSAGE_BYTES, "{} bytes", json.len());
        let back: TerminationMessage = serde_json::from_str(&json).unwrap();
        assert!(back.reasons.last().unwrap().contains("more reason"));
        assert!(!back.passed);
    }

    #[test]
    fn short_messages_are_kept_whole() {
        let message = TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: "smoke-eval".into(),
            passed: true,
            summary: "ok".into(),
            reasons: vec!["a".into()],
        };
        let back: TerminationMessage = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn explicit_path_needs_an_existing_directory() {
        let dir = std::env::temp_dir();
        assert!(termination_log_path(Some(&dir.join("rampart-termination"))).is_some());
        assert!(termination_log_path(Some(Path::new("/nonexistent-rampart-dir/log"))).is_none());
    }

    #[test]
    fn a_loss_curve_keeps_first_and_last_marks_blow_ups_and_fits_the_message() {
        let points: Vec<(u64, f64)> =
            (1..=1000u64).map(|step| (step, if step > 900 { f64::NAN } else { 2.0 / step as f64 })).collect();
        let curve = sample_curve(&points, MAX_CURVE_POINTS);
        assert_eq!(curve.len(), MAX_CURVE_POINTS);
        assert_eq!(curve.first(), Some(&(1, Some(2.0))));
        assert_eq!(curve.last(), Some(&(1000, None)), "a NaN loss is kept as a gap");
        assert!(curve.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(sample_curve(&points[..3], MAX_CURVE_POINTS).len(), 3);
        assert!(sample_curve(&[], 40).is_empty());
        let message = TerminationMessage {
            check: "smoke-eval".into(),
            passed: false,
            summary: "loss diverged".into(),
            reasons: vec!["x".repeat(300); 5],
            files: Vec::new(),
            curve,
        };
        let json = message.to_json();
        assert!(json.len() < MAX_TERMINATION_MESSAGE_BYTES);
        let back: TerminationMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.curve.len(), MAX_CURVE_POINTS, "the curve fits next to the reasons");
    }
}

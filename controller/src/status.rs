//! Pure helpers for building a rollout's status: phase transitions with their history entry, the kstatus-style
//! conditions derived from the phase, and the text limits every message obeys. No I/O; the decision uses them.

use jiff::Timestamp;
use rampart_api::v1alpha1::{CheckOutcome, Condition, HistoryEntry};
use rampart_api::{ModelRolloutStatus, Phase};

/// Most transitions kept in `status.history`.
pub const HISTORY_LIMIT: usize = 30;

/// Enters `phase` with a message: phase, message and a history entry. Conditions follow from the result
/// ([`set_conditions`]), so they are never written by hand.
pub fn transition(status: &mut ModelRolloutStatus, phase: Phase, message: String, now: Timestamp) {
    status.phase = Some(phase);
    status.message = Some(message.clone());
    let history = status.history.get_or_insert_with(Vec::new);
    history.push(HistoryEntry {
        time: now.to_string(),
        phase,
        step: status.current_step,
        message: Some(truncate(&message, 512)),
    });
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}

/// Sets the conditions that tools read (kstatus: `Ready`, `Reconciling`, `Stalled`; plus `ChecksPassed` and
/// `Promoted`) from the phase and check results. A condition keeps its `lastTransitionTime` while its status holds.
pub fn set_conditions(status: &mut ModelRolloutStatus, now: Timestamp, generation: Option<i64>) {
    let phase = status.phase.unwrap_or(Phase::Pending);
    let message = status.message.clone().unwrap_or_default();
    let (ready, ready_reason) = match phase {
        Phase::Succeeded => ("True", "Promoted"),
        Phase::RolledBack | Phase::RollingBack => ("False", "RolledBack"),
        Phase::Failed => ("False", "Failed"),
        Phase::Paused => ("False", "Paused"),
        _ => ("False", "Progressing"),
    };
    set_condition(status, "Ready", ready, ready_reason, &message, now, generation);

    let reconciling = match phase {
        Phase::Pending | Phase::Verifying | Phase::Checking | Phase::Progressing | Phase::Promoting | Phase::Baking => {
            ("True", phase_reason(phase))
        }
        Phase::RollingBack => ("True", "RollingBack"),
        _ => ("False", phase_reason(phase)),
    };
    set_condition(status, "Reconciling", reconciling.0, reconciling.1, &message, now, generation);

    // Stalled: the desired outcome (the candidate serving) cannot be reached without a person.
    let stalled = match phase {
        Phase::Failed => ("True", "Failed"),
        Phase::RolledBack | Phase::RollingBack => ("True", "RolledBack"),
        Phase::Paused => ("True", "Paused"),
        _ => ("False", phase_reason(phase)),
    };
    set_condition(status, "Stalled", stalled.0, stalled.1, &message, now, generation);

    let (checks, checks_reason, checks_message) = checks_condition(status);
    set_condition(status, "ChecksPassed", checks, checks_reason, &checks_message, now, generation);

    let promoted = if phase == Phase::Succeeded { ("True", "Promoted") } else { ("False", phase_reason(phase)) };
    set_condition(status, "Promoted", promoted.0, promoted.1, &message, now, generation);
}

fn phase_reason(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Verifying => "Verifying",
        Phase::Checking => "Checking",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Promoting => "Promoting",
        Phase::Baking => "Baking",
        Phase::Succeeded => "Succeeded",
        Phase::RollingBack => "RollingBack",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
    }
}

/// `ChecksPassed`: True once every check before traffic passed (or was skipped by allowed configuration), False when
/// one failed, Unknown while they run.
fn checks_condition(status: &ModelRolloutStatus) -> (&'static str, &'static str, String) {
    let phase = status.phase.unwrap_or(Phase::Pending);
    let before_traffic = matches!(phase, Phase::Pending | Phase::Verifying | Phase::Checking);
    let Some(checks) = &status.checks else {
        if before_traffic {
            return ("Unknown", "NotStarted", "the checks before traffic have not started".into());
        }
        return ("True", "Passed", "every check before traffic passed".into());
    };
    let all =
        [("signature", &checks.signature), ("contract", &checks.contract), ("smoke-training", &checks.smoke_training)];
    if let Some((name, result)) = all.iter().find_map(|(n, c)| {
        c.as_ref().filter(|c| matches!(c.result, CheckOutcome::Failed | CheckOutcome::Unknown)).map(|c| (n, c))
    }) {
        return (
            "False",
            "CheckFailed",
            format!("{name} check failed: {}", result.message.clone().unwrap_or_default()),
        );
    }
    if all.iter().any(|(_, c)| c.as_ref().is_some_and(|c| c.result == CheckOutcome::Running)) {
        return ("Unknown", "Running", "checks are running".into());
    }
    if before_traffic {
        return ("Unknown", "Running", "checks are running".into());
    }
    ("True", "Passed", "every check before traffic passed".into())
}

/// Sets one condition, keeping its transition time while its status is unchanged.
pub fn set_condition(
    status: &mut ModelRolloutStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let previous = conditions.iter().find(|c| c.type_ == type_);
    let changed = previous.is_none_or(|c| c.status != value);
    let previous_time = previous.and_then(|c| c.last_transition_time.clone());
    let condition = Condition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(truncate(message, 1024)),
        last_transition_time: if changed { Some(now.to_string()) } else { previous_time },
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `...`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A duration as people write it in a spec: `5m`, `1h30m`, `2.5s`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 && secs.is_multiple_of(60) {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// An RFC 3339 time from status; None when missing or unreadable.
pub fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_api::v1alpha1::{CheckResult, ChecksStatus};

    fn condition<'a>(status: &'a ModelRolloutStatus, type_: &str) -> &'a Condition {
        status.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == type_)).expect("condition present")
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 7), "éé...");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut status = ModelRolloutStatus::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        set_condition(&mut status, "Ready", "False", "Progressing", "a", t0, Some(1));
        set_condition(&mut status, "Ready", "False", "Paused", "b", t1, Some(1));
        let c = condition(&status, "Ready");
        assert_eq!(c.last_transition_time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(c.reason.as_deref(), Some("Paused"));
        set_condition(&mut status, "Ready", "True", "Promoted", "c", t1, Some(1));
        assert_eq!(condition(&status, "Ready").last_transition_time.as_deref(), Some("2026-01-01T00:05:00Z"));
    }

    #[test]
    fn kstatus_conditions_follow_the_phase() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut status = ModelRolloutStatus::default();
        transition(&mut status, Phase::Progressing, "step 0".into(), now);
        set_conditions(&mut status, now, Some(3));
        assert_eq!(condition(&status, "Reconciling").status, "True");
        assert_eq!(condition(&status, "Stalled").status, "False");
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(condition(&status, "Ready").observed_generation, Some(3));

        transition(&mut status, Phase::Succeeded, "promoted".into(), now);
        set_conditions(&mut status, now, Some(3));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Promoted").status, "True");
        assert_eq!(condition(&status, "Reconciling").status, "False");
        assert_eq!(condition(&status, "ChecksPassed").status, "True");

        transition(&mut status, Phase::Failed, "contract check failed".into(), now);
        status.checks = Some(ChecksStatus {
            contract: Some(CheckResult {
                result: CheckOutcome::Failed,
                message: Some("output removed".into()),
                signer: None,
                job: None,
                loss_curve: None,
            }),
            ..Default::default()
        });
        set_conditions(&mut status, now, Some(3));
        assert_eq!(condition(&status, "Stalled").status, "True");
        assert_eq!(condition(&status, "ChecksPassed").status, "False");
        assert!(condition(&status, "ChecksPassed").message.as_deref().unwrap_or("").contains("output removed"));
    }

    #[test]
    fn history_is_bounded() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut status = ModelRolloutStatus::default();
        for i in 0..(HISTORY_LIMIT + 5) {
            transition(&mut status, Phase::Progressing, format!("step {i}"), now);
        }
        let history = status.history.as_ref().unwrap();
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history.last().unwrap().message.as_deref(), Some(format!("step {}", HISTORY_LIMIT + 4).as_str()));
    }

    #[test]
    fn durations_read_like_specs() {
        assert_eq!(format_duration(std::time::Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(std::time::Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(std::time::Duration::from_millis(2500)), "2.5s");
    }
}

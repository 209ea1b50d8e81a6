//! The seal over the status fields that gate traffic. Status is Rampart's record of which gates passed, which step
//! runs and where traffic is; anyone granted `modelrollouts/status` could write it (a `phase: Promoting`, a check
//! `result: Passed`, a `currentStep` past the end). Rampart seals those fields with an HMAC-SHA256 under a key only
//! the controller holds (the Secret [`KEY_SECRET`] in its own namespace, created on first start and shared by the
//! replicas), bound to the rollout's uid, and checks the seal on every reconcile before deciding. A status whose seal
//! does not match is not Rampart's: [`crate::decide`] trusts none of it (see `decide::endings::status_forged`).
//!
//! Sealed: phase, current step, weight, step start, baseline version and URI, handled retry, targets, capacity sizes,
//! check results, when the canary first got traffic, and the bake's state.
//!
//! Not sealed: what only informs (message, conditions, history, observedGeneration), the analysis state (sealed on
//! its own, see `rampart_analysis::StateSeal`) and the outbox (each record is checked against the rollout and the
//! registry when it is applied).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use rampart_analysis::StateKey;
use rampart_api::ModelRolloutStatus;
use rampart_api::v1alpha1::{BakeStatus, CapacityStatus, ChecksStatus, RolloutTargets};
use serde::Serialize;

/// The Secret (in the controller's lease namespace) that holds the status key.
pub const KEY_SECRET: &str = "rampart-status-key";
/// The Secret's data field.
const KEY_FIELD: &str = "key";

/// How far a status read can be trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Its seal matches (or the controller runs without a key).
    #[default]
    Sealed,
    /// Nothing that gates traffic was written yet: a new rollout.
    Fresh,
    /// Something that gates traffic was written by someone else (or the seal is missing or wrong).
    Forged,
}

/// The sealed fields, in a fixed order, named as in the API.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sealed<'a> {
    phase: Option<rampart_api::Phase>,
    current_step: Option<i32>,
    canary_weight: Option<i32>,
    step_started_at: Option<&'a str>,
    baseline_version: Option<&'a str>,
    stable_uri: Option<&'a str>,
    handled_retry: Option<&'a str>,
    targets: Option<&'a RolloutTargets>,
    capacity: Option<&'a CapacityStatus>,
    checks: Option<&'a ChecksStatus>,
    canary_started_at: Option<&'a str>,
    bake: Option<&'a BakeStatus>,
}

fn sealed(status: &ModelRolloutStatus) -> Sealed<'_> {
    Sealed {
        phase: status.phase,
        current_step: status.current_step,
        canary_weight: status.canary_weight,
        step_started_at: status.step_started_at.as_deref(),
        baseline_version: status.baseline_version.as_deref(),
        stable_uri: status.stable_uri.as_deref(),
        handled_retry: status.handled_retry.as_deref(),
        targets: status.targets.as_ref(),
        capacity: status.capacity.as_ref(),
        checks: status.checks.as_ref(),
        canary_started_at: status.canary_started_at.as_deref(),
        bake: status.bake.as_ref(),
    }
}

/// The sealed fields of `status` by their API names, absent ones as null.
pub fn fields(status: &ModelRolloutStatus) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(sealed(status)) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn message(status: &ModelRolloutStatus) -> Vec<u8> {
    serde_json::to_vec(&sealed(status)).unwrap_or_default()
}

/// Seals `status` for the rollout with this uid.
pub fn seal(key: &StateKey, uid: &str, status: &mut ModelRolloutStatus) {
    status.seal = Some(key.mac_hex(uid, &message(status)));
}

/// How far `status` can be trusted. Without a key nothing is checked.
pub fn trust(key: Option<&StateKey>, uid: &str, status: &ModelRolloutStatus) -> Trust {
    let Some(key) = key else { return Trust::Sealed };
    match &status.seal {
        Some(mac) if key.verify_hex(uid, &message(status), mac) => Trust::Sealed,
        None if serde_json::to_value(sealed(status))
            .is_ok_and(|v| v.as_object().is_some_and(|o| o.values().all(|v| v.is_null()))) =>
        {
            Trust::Fresh
        }
        _ => Trust::Forged,
    }
}

/// Reads the status key from [`KEY_SECRET`] in `namespace`, creating it with 32 random bytes the first time. Replicas
/// that start together agree: the one whose create loses reads the winner's key.
pub async fn load_or_create_key(client: &kube::Client, namespace: &str) -> Result<StateKey, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("Secret {namespace}/{KEY_SECRET}");
    for _ in 0..3 {
        match api.get_opt(KEY_SECRET).await {
            Ok(Some(secret)) => {
                let bytes =
                    secret.data.as_ref().and_then(|d| d.get(KEY_FIELD)).map(|b| b.0.clone()).unwrap_or_default();
                if bytes.len() < 16 {
                    return Err(format!(
                        "{what} has no usable `{KEY_FIELD}` (at least 16 bytes): delete it and Rampart creates a new one \
                         (rollouts in flight then start their gates again or roll back)"
                    ));
                }
                return Ok(StateKey::new(&bytes));
            }
            Ok(None) => {}
            Err(err) => return Err(format!("reading {what}: {err}; the controller needs get and create on it")),
        }
        let mut secret = Secret::default();
        secret.metadata.name = Some(KEY_SECRET.into());
        secret.metadata.labels = Some([("app.kubernetes.io/part-of".to_string(), "rampart".to_string())].into());
        secret.data = Some([(KEY_FIELD.to_string(), ByteString(random_bytes()?))].into());
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(format!("creating {what}: {err}; the controller needs get and create on it")),
        }
    }
    Err(format!("{what} was created and deleted again while the controller read it"))
}

/// 32 bytes from the kernel's random source: a fresh key.
pub fn random_bytes() -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|err| format!("no random source for a key: {err}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_api::Phase;
    use rampart_api::v1alpha1::{CheckOutcome, CheckResult};

    fn key() -> StateKey {
        StateKey::new(b"a status key of 32 bytes, fixed.")
    }

    #[test]
    fn a_sealed_status_is_trusted_and_any_gate_field_changed_is_not() {
        let mut status = ModelRolloutStatus {
            phase: Some(Phase::Checking),
            current_step: Some(0),
            canary_weight: Some(0),
            ..Default::default()
        };
        seal(&key(), "uid-1", &mut status);
        assert_eq!(trust(Some(&key()), "uid-1", &status), Trust::Sealed);
        // Informing fields are not sealed.
        let mut informed = status.clone();
        informed.message = Some("anything".into());
        assert_eq!(trust(Some(&key()), "uid-1", &informed), Trust::Sealed);
        // Each gate field is.
        let mut promoting = status.clone();
        promoting.phase = Some(Phase::Promoting);
        let mut skipped = status.clone();
        skipped.current_step = Some(99);
        let mut passed = status.clone();
        passed.checks = Some(ChecksStatus {
            contract: Some(CheckResult {
                result: CheckOutcome::Passed,
                message: None,
                signer: None,
                job: None,
                loss_curve: None,
            }),
            ..Default::default()
        });
        let mut unsealed = status.clone();
        unsealed.seal = None;
        for forged in [promoting, skipped, passed, unsealed] {
            assert_eq!(trust(Some(&key()), "uid-1", &forged), Trust::Forged, "{forged:?}");
        }
        // The seal is bound to the rollout: copied to another one it does not hold.
        assert_eq!(trust(Some(&key()), "uid-2", &status), Trust::Forged);
        assert_eq!(trust(Some(&StateKey::new(b"another key of 32 bytes, fixed..")), "uid-1", &status), Trust::Forged);
    }

    #[test]
    fn a_new_rollout_is_fresh_and_no_key_checks_nothing() {
        let fresh = ModelRolloutStatus { message: Some("created".into()), ..Default::default() };
        assert_eq!(trust(Some(&key()), "uid-1", &fresh), Trust::Fresh);
        let phase_only = ModelRolloutStatus { phase: Some(Phase::Promoting), ..Default::default() };
        assert_eq!(trust(Some(&key()), "uid-1", &phase_only), Trust::Forged);
        assert_eq!(trust(None, "uid-1", &phase_only), Trust::Sealed);
    }
}

//! Draining the registry outbox: the records a rollout queued in `status.outbox` are applied to Postgres in order and
//! dropped from the outbox. Bounded in time and paused for a while after a failure, so a Postgres outage never slows
//! a reconcile (a rollback least of all). Also the one registry write promotion waits for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_api::v1alpha1::CheckOutcome;
use rampart_api::{ModelRolloutSpec, ModelRolloutStatus};
use rampart_checks::signing::TrustedKey;

use crate::trail::{Origin, RETRY_FIELD, RegistryConnection, TrailRecord};

/// How long one flush may take.
const FLUSH_BUDGET: Duration = Duration::from_millis(1500);
/// How long flushes for a rollout pause after the registry failed it.
const BACKOFF: Duration = Duration::from_secs(5);

/// When the registry last failed each rollout's outbox (by uid).
#[derive(Default)]
pub struct Backoff {
    failed_at: Mutex<HashMap<String, Instant>>,
}

impl Backoff {
    fn waiting(&self, uid: &str) -> bool {
        let failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.get(uid).is_some_and(|at| at.elapsed() < BACKOFF)
    }

    fn failed(&self, uid: &str) {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), Instant::now());
    }

    /// Forgets a rollout (it was deleted).
    pub fn forget(&self, uid: &str) {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// The outbox that remains, when at least one record was applied (the caller writes it with the reconcile's
    /// status); None when nothing changed.
    pub remaining: Option<Vec<String>>,
    /// The registry failed (it is skipped for a while).
    pub failed: bool,
    /// The registry refused a record that establishes this rollout in it (its version, verification or start), so
    /// the rollout could never be promoted: why, for the rollout's status. Other refusals are only logged.
    pub refused: Option<String>,
    /// Records that did not match the rollout they were queued for (forged into status): refused, logged, counted.
    pub forged: usize,
}

/// The rollout whose outbox is flushed: what its records must match.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    /// `metadata.uid`.
    pub uid: &'a str,
    /// Namespace (the model must belong to it in the registry).
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// The spec: model, candidate version and digest, and whether it is allowed to skip signatures.
    pub spec: &'a ModelRolloutSpec,
    /// Keys a `MarkVerified` record's bundle must verify with.
    pub trusted_keys: &'a [TrustedKey],
    /// Where each trusted key may vouch (see [`crate::verify::KeyScope`]).
    pub key_scopes: &'a crate::verify::KeyScopes,
}

/// Applies the queued records in order. Records are first checked against the rollout they were queued for: anyone
/// who can write `modelrollouts/status` can write the outbox, so a record for another rollout's uid, another model or
/// candidate, or a verification whose bundle does not verify with a trusted key over the candidate's digest is
/// refused (logged and dropped), never applied.
pub async fn flush(registry: &RegistryConnection, backoff: &Backoff, owner: &Owner<'_>, outbox: &[String]) -> Flushed {
    let id = format!("{}/{}", owner.namespace, owner.name);
    if outbox.is_empty() || backoff.waiting(owner.uid) {
        return Flushed::default();
    }
    let mut refused = None;
    let mut forged = 0;
    let applied = tokio::time::timeout(FLUSH_BUDGET, async {
        let registry = match registry.get().await {
            Ok(registry) => registry,
            Err(err) => return (0, Some(err)),
        };
        let mut applied = 0;
        for text in outbox {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
                forged += 1;
                tracing::warn!(rollout = %id, "an outbox entry is not JSON; refusing it");
                applied += 1;
                continue;
            };
            let retry = value.get(RETRY_FIELD).and_then(serde_json::Value::as_str).map(str::to_string);
            let record = match serde_json::from_value::<TrailRecord>(value) {
                Ok(record) => record,
                Err(err) => {
                    forged += 1;
                    tracing::warn!(rollout = %id, error = %err, "an outbox entry is not a trail record; refusing it");
                    applied += 1;
                    continue;
                }
            };
            if let Err(why) = check_record(&record, owner) {
                forged += 1;
                tracing::warn!(rollout = %id, %why, "refusing an outbox record that this rollout did not queue");
                applied += 1;
                continue;
            }
            let origin = Origin { namespace: Some(owner.namespace), retry: retry.as_deref() };
            match record.apply_from(&registry, &origin).await {
                Ok(()) => applied += 1,
                Err(err) if err.is_retryable() => return (applied, Some(err.to_string())),
                Err(err) => {
                    tracing::warn!(rollout = %id, error = %err, "the registry refused a record");
                    if record.establishes_rollout() && refused.is_none() {
                        refused = Some(err.to_string());
                    }
                    applied += 1;
                }
            }
        }
        (applied, None)
    })
    .await
    .unwrap_or((0, Some("the registry did not answer in time".to_string())));
    let (applied, failure) = applied;
    if let Some(err) = &failure {
        tracing::warn!(rollout = %id, error = %err, pending = outbox.len() - applied, "registry unavailable; the trail waits in the outbox");
        backoff.failed(owner.uid);
    }
    Flushed { remaining: (applied > 0).then(|| outbox[applied..].to_vec()), failed: failure.is_some(), refused, forged }
}

/// Checks that a record is one this rollout could have queued: its uid, model and candidate, and for a verification
/// a bundle that verifies with a trusted key over the candidate's digest. The error says what did not match.
pub fn check_record(record: &TrailRecord, owner: &Owner<'_>) -> Result<(), String> {
    let spec = owner.spec;
    let candidate = &spec.candidate.version;
    let digest = spec.candidate.artifact.digest.to_ascii_lowercase();
    let same = |what: &str, recorded: &str, expected: &str| {
        if recorded == expected {
            Ok(())
        } else {
            Err(format!("its {what} is `{recorded}`, this rollout's is `{expected}`"))
        }
    };
    match record {
        TrailRecord::RegisterVersion { version } => {
            same("model", &version.model, &spec.model)?;
            same("version", &version.version, candidate)?;
            same("digest", &version.digest.to_ascii_lowercase(), &digest)
        }
        TrailRecord::MarkVerified { model, version, verification } => {
            same("model", model, &spec.model)?;
            same("version", version, candidate)?;
            same("digest", &verification.digest.to_ascii_lowercase(), &digest)?;
            let bundle = verification.signature_bundle.as_deref().ok_or("a verification without its bundle")?;
            let (statement, key) = rampart_checks::signing::verify_bundle(bundle.as_bytes(), owner.trusted_keys)
                .map_err(|err| format!("its bundle does not verify with a trusted key: {err}"))?;
            same("signer", &verification.signer_key_id, key.key_id())?;
            crate::verify::check_scope(owner.key_scopes, &key.label, owner.namespace, &spec.model)?;
            let signed: String = statement.model_digest.iter().map(|b| format!("{b:02x}")).collect();
            same("signed digest", &format!("sha256:{signed}"), &digest)
        }
        TrailRecord::StartRollout { rollout } => {
            same("uid", &rollout.uid, owner.uid)?;
            same("namespace", &rollout.namespace, owner.namespace)?;
            same("name", &rollout.name, owner.name)?;
            same("model", &rollout.model, &spec.model)?;
            same("candidate", &rollout.candidate_version, candidate)
        }
        TrailRecord::Step { uid, .. }
        | TrailRecord::Verdict { uid, .. }
        | TrailRecord::Rollback { uid, .. }
        | TrailRecord::Finish { uid, .. } => same("uid", uid, owner.uid),
        // It moves `production`: only a rollout that bakes can have queued it.
        TrailRecord::RollbackAfterPromotion { uid, .. } if spec.bake.is_some() => same("uid", uid, owner.uid),
        TrailRecord::RollbackAfterPromotion { .. } => {
            Err("a rollback after promotion from a rollout without spec.bake".into())
        }
        TrailRecord::PromotedUnverified { .. } => {
            Err("a promotion is written by the controller when it promotes, never queued".into())
        }
    }
}

/// Records the promotion before anything moves: the outbox must be empty and the `production` alias must move.
/// Unsigned (insecure) candidates are recorded as promoted without moving the alias. `Err` says why promotion waits.
pub async fn record_promotion(
    registry: &RegistryConnection,
    spec: &ModelRolloutSpec,
    status: &ModelRolloutStatus,
    uid: &str,
    actor: &str,
) -> Result<(), String> {
    let pending = status.outbox.as_ref().map_or(0, Vec::len);
    if pending > 0 {
        return Err(format!("{pending} trail records not yet written"));
    }
    let registry = registry.get().await?;
    let verified =
        status.checks.as_ref().and_then(|c| c.signature.as_ref()).is_some_and(|s| s.result == CheckOutcome::Passed);
    let result = if verified {
        registry.record_promotion(uid, actor).await.map(drop)
    } else {
        TrailRecord::PromotedUnverified {
            model: spec.model.clone(),
            uid: uid.to_string(),
            version: spec.candidate.version.clone(),
        }
        .apply(&registry)
        .await
    };
    result.map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use rampart_checks::signing::{HashingOptions, PrivateKey, sign_model};
    use rampart_registry::{NewRollout, NewVersion, StepRecord, Verification};
    use serde_json::json;

    use super::*;

    fn spec(digest: &str) -> ModelRolloutSpec {
        serde_json::from_value(json!({
            "model": "fraud",
            "candidate": {"version": "v2", "artifact": {"uri": "s3://models/fraud/v2/", "digest": digest}},
            "serving": {"deployment": {"name": "fraud", "modelEnv": "MODEL_URI"}},
            "steps": [{"setWeight": 50}],
        }))
        .unwrap()
    }

    static NO_SCOPES: std::sync::LazyLock<crate::verify::KeyScopes> = std::sync::LazyLock::new(Default::default);

    fn owner<'a>(spec: &'a ModelRolloutSpec, keys: &'a [TrustedKey]) -> Owner<'a> {
        Owner { uid: "uid-a", namespace: "team-a", name: "fraud-v2", spec, trusted_keys: keys, key_scopes: &NO_SCOPES }
    }

    #[test]
    fn records_for_another_rollout_model_or_candidate_are_refused() {
        let spec = spec(&format!("sha256:{}", "a".repeat(64)));
        let owner = owner(&spec, &[]);
        let finish = |uid: &str| TrailRecord::Finish { uid: uid.into(), aborted: false, reason: "forged".into() };
        assert!(check_record(&finish("uid-a"), &owner).is_ok());
        let err = check_record(&finish("uid-of-team-b"), &owner).unwrap_err();
        assert!(err.contains("uid-of-team-b") && err.contains("uid-a"), "{err}");
        let step = TrailRecord::Step {
            uid: "uid-b".into(),
            step: StepRecord { index: 0, canary_weight: 100, description: "forged".into() },
        };
        assert!(check_record(&step, &owner).is_err());
        let start = |namespace: &str, model: &str| TrailRecord::StartRollout {
            rollout: NewRollout {
                model: model.into(),
                uid: "uid-a".into(),
                namespace: namespace.into(),
                name: "fraud-v2".into(),
                candidate_version: "v2".into(),
                baseline_version: None,
            },
        };
        assert!(check_record(&start("team-a", "fraud"), &owner).is_ok());
        assert!(check_record(&start("team-b", "fraud"), &owner).is_err(), "a start claiming another namespace");
        assert!(check_record(&start("team-a", "payments"), &owner).is_err(), "a start for another model");
        let register = |version: &str| TrailRecord::RegisterVersion {
            version: NewVersion {
                model: "fraud".into(),
                version: version.into(),
                digest: spec.candidate.artifact.digest.clone(),
                ..Default::default()
            },
        };
        assert!(check_record(&register("v2"), &owner).is_ok());
        assert!(check_record(&register("v3"), &owner).is_err());
        let promoted =
            TrailRecord::PromotedUnverified { model: "fraud".into(), uid: "uid-a".into(), version: "v2".into() };
        assert!(check_record(&promoted, &owner).is_err(), "promotions are never queued");
    }

    #[test]
    fn a_rollback_after_promotion_is_taken_only_from_a_rollout_that_bakes() {
        let mut spec = spec(&format!("sha256:{}", "a".repeat(64)));
        let rollback = |uid: &str| TrailRecord::RollbackAfterPromotion {
            uid: uid.into(),
            reason: "bake failed".into(),
            statistics: json!({}),
        };
        let err = check_record(&rollback("uid-a"), &owner(&spec, &[])).unwrap_err();
        assert!(err.contains("without spec.bake"), "{err}");
        spec.bake =
            Some(rampart_api::v1alpha1::Bake { duration: "1h".into(), interval: None, previous_replicas: None });
        assert!(check_record(&rollback("uid-a"), &owner(&spec, &[])).is_ok());
        assert!(check_record(&rollback("uid-b"), &owner(&spec, &[])).is_err(), "another rollout's");
    }

    #[test]
    fn a_verification_counts_only_with_a_bundle_a_trusted_key_signed_over_the_candidates_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"bytes").unwrap();
        let trusted = PrivateKey::from_scalar_bytes(&[7; 32]).unwrap();
        let stranger = PrivateKey::from_scalar_bytes(&[9; 32]).unwrap();
        let signed = sign_model(dir.path(), &trusted, &HashingOptions::default()).unwrap();
        let by_stranger = sign_model(dir.path(), &stranger, &HashingOptions::default()).unwrap();
        let keys = vec![TrustedKey::from_private(&trusted, "trusted.pem")];
        let spec = spec(&signed.model_digest);
        let owner = owner(&spec, &keys);
        let verified = |bundle: Option<String>, signer: &str| TrailRecord::MarkVerified {
            model: "fraud".into(),
            version: "v2".into(),
            verification: Verification {
                digest: signed.model_digest.clone(),
                signer_key_id: signer.into(),
                signature_bundle: bundle,
                ..Default::default()
            },
        };
        let key_id = keys[0].key_id().to_string();
        assert_eq!(check_record(&verified(Some(signed.bundle_json.clone()), &key_id), &owner), Ok(()));
        assert!(check_record(&verified(None, &key_id), &owner).is_err(), "no bundle, no verification");
        let err = check_record(&verified(Some(by_stranger.bundle_json.clone()), &key_id), &owner).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        assert!(check_record(&verified(Some(signed.bundle_json.clone()), "another-key"), &owner).is_err());
        let other_spec = self::spec(&format!("sha256:{}", "b".repeat(64)));
        assert!(check_record(&verified(Some(signed.bundle_json), &key_id), &self::owner(&other_spec, &keys)).is_err());
    }
}

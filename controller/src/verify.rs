//! Signature and digest verification before any traffic moves: the candidate's OpenSSF model-signing bundle must be
//! signed by a key the controller trusts (never a key named by the rollout), its subject digest must equal
//! `spec.candidate.artifact.digest`, and its subject name must be `spec.model` (or `signedName`), so a bundle signed
//! for one model cannot vouch for another. Here only the bundle is checked against the rollout; the bytes at the URI
//! are checked where they are read, by `rampart-check fetch` in the artifact-verification Job and in the init
//! container of every check Job and serving pod (see `jobs::fetch_init_container`).

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, ResourceExt};
use rampart_api::ModelRollout;
use rampart_checks::signing::{TrustedKey, check_model_name, verify_bundle};

/// Who signed a verified candidate.
#[derive(Clone, Debug)]
pub struct Signer {
    /// Key id of the trusted key that signed.
    pub key_id: String,
    /// The trusted key's label (its file name).
    pub key_label: String,
    /// The bundle, for the registry and the fetching init containers.
    pub bundle: String,
    /// The signed subject name (equal to `spec.model` or `signedName`).
    pub model_name: String,
    /// The signed per-file digests (`name`, hex sha256), for the registry.
    pub files: Vec<(String, String)>,
    /// The model is one file (its manifest names `.`), so the verified copy is a file, not a directory.
    pub single_file: bool,
}

/// Where a trusted key may vouch for models: namespaces and model names (an entry ending in `*` matches by prefix).
/// An empty list allows any. A key without a scope is trusted everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyScope {
    /// Namespaces whose rollouts the key may sign for.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Models (`spec.model`) the key may sign for, e.g. `fraud-*`.
    #[serde(default)]
    pub models: Vec<String>,
}

impl KeyScope {
    /// Whether the key may sign `model` for a rollout in `namespace`.
    pub fn allows(&self, namespace: &str, model: &str) -> bool {
        let matches = |patterns: &[String], value: &str| {
            patterns.is_empty()
                || patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => value.starts_with(prefix),
                    None => p == value,
                })
        };
        matches(&self.namespaces, namespace) && matches(&self.models, model)
    }

    fn describe(&self) -> String {
        let list = |items: &[String]| if items.is_empty() { "any".to_string() } else { items.join(", ") };
        format!("namespaces: {}; models: {}", list(&self.namespaces), list(&self.models))
    }
}

/// Scopes by key label (the key's file name).
pub type KeyScopes = std::collections::BTreeMap<String, KeyScope>;

/// The file in the trusted-keys directory that scopes keys, e.g.
/// `team-ml.pub: {namespaces: [ml], models: ["fraud-*"]}`.
pub const SCOPES_FILE: &str = "scopes.yaml";

/// Reads `scopes.yaml` from the trusted-keys directory (none: every key is trusted everywhere). A scope for a key
/// that is not there is refused, so a typo cannot leave the key it meant unscoped.
pub fn load_key_scopes(dir: &Path, keys: &[TrustedKey]) -> Result<KeyScopes, String> {
    let path = dir.join(SCOPES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(KeyScopes::new()),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let scopes: KeyScopes = serde_saphyr::from_str(&text).map_err(|err| {
        format!(
            "{} is not a map of key file names to scopes, e.g. `team-ml.pub: {{namespaces: [ml], models: [\"fraud-*\"]}}`: {err}",
            path.display()
        )
    })?;
    for label in scopes.keys() {
        if !keys.iter().any(|k| &k.label == label) {
            let known: Vec<&str> = keys.iter().map(|k| k.label.as_str()).collect();
            return Err(format!(
                "{} scopes {label:?}, which is not a trusted key in {} (keys: {})",
                path.display(),
                dir.display(),
                known.join(", ")
            ));
        }
    }
    Ok(scopes)
}

/// Whether the key with this label may sign `model` for a rollout in `namespace`; the message says which scope
/// refused it.
pub fn check_scope(scopes: &KeyScopes, label: &str, namespace: &str, model: &str) -> Result<(), String> {
    match scopes.get(label) {
        Some(scope) if !scope.allows(namespace, model) => Err(format!(
            "the signature verifies with trusted key {label}, but this controller trusts that key only for {} (this \
             rollout: namespace {namespace}, model {model}); sign with a key trusted for this team, or ask the \
             platform team to widen the key's scope in {SCOPES_FILE}",
            scope.describe()
        )),
        _ => Ok(()),
    }
}

/// Loads every `*.pem` (and `*.pub`) public key in `dir` as a trusted signing key.
pub fn load_trusted_keys(dir: &Path) -> Result<Vec<TrustedKey>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read trusted keys in {}: {err}", dir.display()))?;
    let mut keys = Vec::new();
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let is_key = path.extension().is_some_and(|ext| ext == "pem" || ext == "pub");
        if !is_key || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        keys.push(
            TrustedKey::from_pem(&text, &label)
                .map_err(|err| format!("{} is not a usable public key: {err}", path.display()))?,
        );
    }
    Ok(keys)
}

/// Verifies the rollout's candidate. `Ok(None)`: signature checking was skipped (allowed insecure rollout). Errors are
/// messages for the user, naming what to fix.
pub async fn verify_candidate(
    client: &kube::Client,
    rollout: &ModelRollout,
    trusted: &[TrustedKey],
    scopes: &KeyScopes,
    allow_insecure: bool,
) -> Result<Option<Signer>, String> {
    let spec = &rollout.spec;
    let insecure = spec.checks.as_ref().and_then(|c| c.insecure_skip_signature).unwrap_or(false);
    if insecure {
        if allow_insecure {
            return Ok(None);
        }
        return Err("spec.checks.insecureSkipSignature is set, but this controller does not allow unsigned models \
                    (start it with --allow-insecure-skip-signature for test clusters), so the candidate gets no traffic"
            .into());
    }
    let bundle = load_bundle(client, rollout).await?;
    if trusted.is_empty() {
        return Err(
            "this controller has no trusted signing keys (--trusted-keys-dir), so no signature can verify".into()
        );
    }
    let (statement, key) =
        verify_bundle(bundle.as_bytes(), trusted).map_err(|err| format!("the signature does not verify: {err}"))?;
    check_scope(scopes, &key.label, &rollout.namespace().unwrap_or_default(), &spec.model)?;
    let signed = format!("sha256:{}", hex(&statement.model_digest));
    if signed != spec.candidate.artifact.digest {
        return Err(format!(
            "digest mismatch: the signature covers {signed} but spec.candidate.artifact.digest is {}; the artifact \
             changed after signing, or the rollout names the wrong digest",
            spec.candidate.artifact.digest
        ));
    }
    let expected_name = signed_name(rollout);
    check_model_name(&statement, expected_name).map_err(|err| {
        format!(
            "{err}; spec.model is {:?}{}",
            spec.model,
            if spec.candidate.artifact.signed_name.is_some() {
                " (spec.candidate.artifact.signedName is set)"
            } else {
                ""
            }
        )
    })?;
    Ok(Some(Signer {
        key_id: key.key_id().to_string(),
        key_label: key.label.clone(),
        bundle,
        model_name: statement.model_name.clone(),
        single_file: statement.files.len() == 1 && statement.files[0].name == ".",
        files: statement.files.iter().map(|f| (f.name.clone(), hex(&f.sha256))).collect(),
    }))
}

/// The name the signed statement must carry: `spec.candidate.artifact.signedName`, else `spec.model`.
pub fn signed_name(rollout: &ModelRollout) -> &str {
    rollout.spec.candidate.artifact.signed_name.as_deref().unwrap_or(&rollout.spec.model)
}

/// Reads the candidate's bundle: inline, or from a Secret or ConfigMap of the rollout's namespace.
pub async fn load_bundle(client: &kube::Client, rollout: &ModelRollout) -> Result<String, String> {
    let spec = &rollout.spec;
    let namespace = rollout.namespace().unwrap_or_default();
    let Some(source) = &spec.candidate.artifact.signature else {
        return Err(
            "the candidate has no signature (spec.candidate.artifact.signature): sign it with `rampart sign` and \
                    reference the bundle"
                .into(),
        );
    };
    if let Some(inline) = &source.bundle {
        Ok(inline.clone())
    } else if let Some(key_ref) = &source.secret_ref {
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&key_ref.name)
            .await
            .map_err(|err| format!("cannot read the signature Secret {namespace}/{}: {err}", key_ref.name))?;
        let bytes = secret
            .data
            .and_then(|data| data.get(&key_ref.key).cloned())
            .ok_or_else(|| format!("Secret {namespace}/{} has no key {:?}", key_ref.name, key_ref.key))?;
        String::from_utf8(bytes.0)
            .map_err(|_| format!("Secret {namespace}/{} key {:?} is not text", key_ref.name, key_ref.key))
    } else if let Some(key_ref) = &source.config_map_ref {
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get(&key_ref.name)
            .await
            .map_err(|err| format!("cannot read the signature ConfigMap {namespace}/{}: {err}", key_ref.name))?;
        config_map
            .data
            .and_then(|data| data.get(&key_ref.key).cloned())
            .ok_or_else(|| format!("ConfigMap {namespace}/{} has no key {:?}", key_ref.name, key_ref.key))
    } else {
        Err("spec.candidate.artifact.signature names no bundle".into())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_allows_its_namespaces_and_models_and_nothing_else() {
        let scope = KeyScope { namespaces: vec!["ml".into()], models: vec!["fraud-*".into(), "ranker".into()] };
        assert!(scope.allows("ml", "fraud-detector"));
        assert!(scope.allows("ml", "ranker"));
        assert!(!scope.allows("ml", "ranker-v2"));
        assert!(!scope.allows("payments", "fraud-detector"));
        assert!(KeyScope::default().allows("anywhere", "anything"));
        let scopes: KeyScopes = [("team-ml.pub".to_string(), scope)].into();
        let refused = check_scope(&scopes, "team-ml.pub", "payments", "fraud-detector").unwrap_err();
        assert!(refused.contains("only for namespaces: ml; models: fraud-*, ranker"), "{refused}");
        assert!(check_scope(&scopes, "release-bot.pub", "payments", "anything").is_ok(), "unscoped keys are global");
    }

    #[test]
    fn a_scope_for_a_key_that_is_not_there_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SCOPES_FILE), "team-ml.pem: {namespaces: [ml]}\n").unwrap();
        let err = load_key_scopes(dir.path(), &[]).unwrap_err();
        assert!(err.contains("not a trusted key"), "{err}");
        std::fs::write(dir.path().join(SCOPES_FILE), "team-ml.pem: {namespace: [ml]}\n").unwrap();
        assert!(load_key_scopes(dir.path(), &[]).unwrap_err().contains("not a map of key file names"));
        std::fs::remove_file(dir.path().join(SCOPES_FILE)).unwrap();
        assert_eq!(load_key_scopes(dir.path(), &[]).unwrap(), KeyScopes::new());
    }
}

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

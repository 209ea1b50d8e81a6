//! Signing and verifying a model on local disk from file arguments: the one implementation behind `rampart sign` /
//! `rampart verify` and `rampart-check sign` / `rampart-check verify`, so both commands read keys and bundles, leave a
//! bundle stored inside the model out of the manifest, and report results the same way.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{
    HashingOptions, MAX_BUNDLE_BYTES, PrivateKey, SignatureError, SignedModel, TrustedKey, Verified, VerifyOptions,
    hash_model, sign_manifest, verify_model,
};

/// What `sign` was asked to do.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// The model: one file or a directory.
    pub model_path: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
    /// Where the bundle goes. When it lies inside the model directory it is left out of the manifest.
    pub out: PathBuf,
    /// Paths relative to the model directory to leave out.
    pub ignore_paths: Vec<String>,
    /// Sign git metadata too.
    pub include_git_paths: bool,
    /// Follow symbolic links to files.
    pub allow_symlinks: bool,
    /// The model name the statement names as its subject (the rollout's `spec.model`); default: the file or
    /// directory name, as the reference tool does.
    pub model_name: Option<String>,
}

/// Signs the model and writes the bundle to `request.out`.
pub fn sign_to_file(request: &SignRequest) -> Result<SignedModel, SignatureError> {
    let key = PrivateKey::from_pem_file(&request.key)?;
    let mut ignore_paths = request.ignore_paths.clone();
    if let Some(inside) = bundle_path_inside(&request.model_path, &request.out) {
        ignore_paths.push(inside);
    }
    let options = HashingOptions {
        ignore_paths,
        ignore_git_paths: !request.include_git_paths,
        allow_symlinks: request.allow_symlinks,
    };
    let mut manifest = hash_model(&request.model_path, &options)?;
    if let Some(name) = &request.model_name {
        manifest.model_name = name.clone();
    }
    let signed = sign_manifest(&manifest, &key, &options)?;
    std::fs::write(&request.out, signed.bundle_json.as_bytes())
        .map_err(|source| SignatureError::Write { path: request.out.clone(), source })?;
    Ok(signed)
}

/// What `verify` was asked to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// Trusted PEM public key files.
    pub keys: Vec<PathBuf>,
    /// The bundle file.
    pub bundle: PathBuf,
    /// The digest the bundle must sign.
    pub expected_digest: Option<String>,
    /// The model name the signed statement must name.
    pub expected_model_name: Option<String>,
    /// Paths to leave out in addition to those the bundle lists.
    pub ignore_paths: Vec<String>,
    /// Do not leave out git metadata unless the bundle lists it.
    pub include_git_paths: bool,
}

/// Verifies the model at `model_path` against the request's bundle and keys.
pub fn verify_files(model_path: &Path, request: &VerifyRequest) -> Result<Verified, SignatureError> {
    let trusted = read_trusted_keys(&request.keys)?;
    let bundle = read_bundle_file(&request.bundle)?;
    let mut extra_ignore_paths = request.ignore_paths.clone();
    if let Some(inside) = bundle_path_inside(model_path, &request.bundle) {
        extra_ignore_paths.push(inside);
    }
    let options = VerifyOptions {
        expected_digest: request.expected_digest.clone(),
        expected_model_name: request.expected_model_name.clone(),
        extra_ignore_paths,
        include_git_paths: request.include_git_paths,
    };
    verify_model(model_path, &bundle, &trusted, &options)
}

/// Reads PEM public keys; the first unreadable one is the error.
pub fn read_trusted_keys(paths: &[PathBuf]) -> Result<Vec<TrustedKey>, SignatureError> {
    paths.iter().map(|path| TrustedKey::from_pem_file(path)).collect()
}

/// Reads a bundle file, at most [`MAX_BUNDLE_BYTES`] (+1 so a larger file is noticed and refused by the parser), so a
/// huge file cannot exhaust memory.
pub fn read_bundle_file(path: &Path) -> Result<Vec<u8>, SignatureError> {
    let file = std::fs::File::open(path).map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_BUNDLE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
    Ok(bytes)
}

/// The bundle's path relative to the model directory (`/`-separated) when the bundle is, or will be, written inside
/// it: then it is not part of the model. `None` for single-file models and bundles elsewhere.
pub fn bundle_path_inside(model_path: &Path, bundle: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model_path).ok()?;
    if !root.is_dir() {
        return None;
    }
    // The bundle may not exist yet (sign): resolve its directory, then append its name.
    let parent = bundle.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let bundle_abs = std::fs::canonicalize(parent).ok()?.join(bundle.file_name()?);
    let relative = bundle_abs.strip_prefix(&root).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// The machine-readable verification report both commands print with JSON output.
pub fn verification_report(result: &Result<Verified, SignatureError>) -> Value {
    match result {
        Ok(verified) => json!({
            "verified": true,
            "keyId": verified.key_id,
            "keyLabel": verified.key_label,
            "modelDigest": verified.model_digest,
            "modelName": verified.model_name,
            "files": verified.files,
        }),
        Err(err) => json!({"verified": false, "reason": err.to_string(), "label": err.metric_label()}),
    }
}

/// The human-readable line for a verified model.
pub fn describe_verified(model_path: &Path, verified: &Verified) -> String {
    format!(
        "verified {} ({} file(s)) as model {:?}: signed by key {} ({})\nmodel digest: {}",
        model_path.display(),
        verified.files,
        verified.model_name,
        verified.key_id,
        verified.key_label,
        verified.model_digest
    )
}

//! Artifact digests and OpenSSF model-signing bundles (DSSE over an in-toto statement).
//!
//! A model (one file or a directory) is summed up by a manifest of per-file sha256 digests; the model digest is the
//! sha256 of those digests concatenated in canonical order. [`sign_model`] signs the manifest with an ECDSA P-256 key
//! into a bundle the reference `model_signing` tool verifies, and [`verify_model`] checks a bundle made by either tool
//! against trusted keys and the files on disk. See `docs/signing.md`.

mod bundle;
mod error;
mod keys;
mod local;
mod manifest;

use std::collections::BTreeMap;
use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};

pub use bundle::{
    BUNDLE_MEDIA_TYPE, Bundle, MAX_BUNDLE_BYTES, PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, Serialization,
    Statement, pae,
};
pub use error::{ChangedFile, SignatureError};
pub use keys::{PrivateKey, TrustedKey};
pub use local::{
    SignRequest, VerifyRequest, bundle_path_inside, describe_verified, read_bundle_file, read_trusted_keys,
    sign_to_file, verification_report, verify_files,
};
pub use manifest::{
    FileDigest, GIT_PATHS, HashingOptions, ModelManifest, hash_file, hash_model, model_digest, normalise_relative,
    parse_model_digest, to_hex,
};

/// A freshly signed model.
#[derive(Debug, Clone)]
pub struct SignedModel {
    /// The bundle, as JSON text (write it to a file or a Secret as is).
    pub bundle_json: String,
    /// `sha256:<hex>` model digest (the value for `spec.candidate.artifact.digest`).
    pub model_digest: String,
    /// How many files the manifest lists.
    pub files: usize,
    /// Key id of the signing key.
    pub key_id: String,
    /// The statement's subject name.
    pub model_name: String,
}

/// Signs the model at `model_path`.
pub fn sign_model(
    model_path: &Path,
    key: &PrivateKey,
    options: &HashingOptions,
) -> Result<SignedModel, SignatureError> {
    let manifest = hash_model(model_path, options)?;
    sign_manifest(&manifest, key, options)
}

/// Signs an already computed manifest (its `model_name` becomes the statement's subject name). `options` are the
/// hashing options the manifest was made with; they are recorded in the bundle so verification repeats them.
pub fn sign_manifest(
    manifest: &ModelManifest,
    key: &PrivateKey,
    options: &HashingOptions,
) -> Result<SignedModel, SignatureError> {
    let serialization =
        Serialization { allow_symlinks: options.allow_symlinks, ignore_paths: options.recorded_ignore_paths() };
    let statement = bundle::statement_json(manifest, &serialization);
    let payload = serde_json::to_vec(&statement).map_err(|err| SignatureError::Signing(err.to_string()))?;
    let signature: p256::ecdsa::Signature = key
        .signing_key()
        .try_sign(&pae(PAYLOAD_TYPE, &payload))
        .map_err(|err| SignatureError::Signing(err.to_string()))?;
    let bundle = bundle::bundle_json(&payload, signature.to_der().as_bytes(), key.key_id());
    let bundle_json = serde_json::to_string_pretty(&bundle).map_err(|err| SignatureError::Signing(err.to_string()))?;
    Ok(SignedModel {
        bundle_json,
        model_digest: manifest.model_digest_string(),
        files: manifest.files.len(),
        key_id: key.key_id().to_string(),
        model_name: manifest.model_name.clone(),
    })
}

/// What to check beyond the signature.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The digest the rollout names (`sha256:<hex>`); the signed model digest must equal it.
    pub expected_digest: Option<String>,
    /// The model name the rollout names (`spec.model`, or its explicit mapping); the statement's subject name must
    /// equal it, so a bundle signed for one model cannot vouch for another.
    pub expected_model_name: Option<String>,
    /// Paths to leave out in addition to those recorded in the bundle.
    pub extra_ignore_paths: Vec<String>,
    /// Do not leave out git metadata unless the bundle says so (the reference tool's `--no-ignore-git-paths`).
    pub include_git_paths: bool,
}

/// A model whose files match a bundle signed by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Key id (see [`TrustedKey::key_id`]) of the key that signed.
    pub key_id: String,
    /// Label of that trusted key (e.g. its file).
    pub key_label: String,
    /// `sha256:<hex>` model digest that was signed.
    pub model_digest: String,
    /// Subject name in the statement (checked when [`VerifyOptions::expected_model_name`] is given).
    pub model_name: String,
    /// Number of files checked.
    pub files: usize,
}

/// Authenticates a bundle: finds the trusted key that signed it and checks the signature. Returns the statement and
/// the key. Does not look at the model files.
pub fn verify_bundle<'k>(
    bundle_bytes: &[u8],
    trusted: &'k [TrustedKey],
) -> Result<(Statement, &'k TrustedKey), SignatureError> {
    if trusted.is_empty() {
        return Err(SignatureError::NoTrustedKeys);
    }
    let bundle = Bundle::parse(bundle_bytes)?;
    let signature = parse_signature(&bundle.signature)?;
    let message = pae(&bundle.payload_type, &bundle.payload);
    let key = match &bundle.key_hint {
        Some(hint) => {
            let key = trusted.iter().find(|key| key.key_id() == hint).ok_or_else(|| SignatureError::UntrustedKey {
                key_id: hint.clone(),
                trusted: trusted.iter().map(|key| key.key_id().to_string()).collect(),
            })?;
            key.verifying_key()
                .verify(&message, &signature)
                .map_err(|_| SignatureError::SignatureInvalid { key_id: key.key_id().to_string() })?;
            key
        }
        None => {
            trusted.iter().find(|key| key.verifying_key().verify(&message, &signature).is_ok()).ok_or_else(|| {
                SignatureError::NoKeyVerifies { trusted: trusted.iter().map(|key| key.key_id().to_string()).collect() }
            })?
        }
    };
    Ok((bundle.statement()?, key))
}

/// Verifies the model at `model_path` against a bundle: the signature must come from one of `trusted`, the signed
/// digest must equal `options.expected_digest` when given, and the files on disk must match the signed manifest
/// exactly (no file changed, added or removed).
pub fn verify_model(
    model_path: &Path,
    bundle_bytes: &[u8],
    trusted: &[TrustedKey],
    options: &VerifyOptions,
) -> Result<Verified, SignatureError> {
    let expected = options.expected_digest.as_deref().map(parse_model_digest).transpose()?;
    let (statement, key) = verify_bundle(bundle_bytes, trusted)?;
    if let Some(expected) = expected
        && expected != statement.model_digest
    {
        return Err(SignatureError::DigestMismatch {
            expected: options.expected_digest.clone().unwrap_or_default(),
            signed: to_hex(&statement.model_digest),
        });
    }
    if let Some(name) = &options.expected_model_name {
        check_model_name(&statement, name)?;
    }
    let mut ignore_paths = statement.serialization.ignore_paths.clone();
    ignore_paths.extend(options.extra_ignore_paths.iter().cloned());
    let hashing = HashingOptions {
        ignore_paths,
        ignore_git_paths: !options.include_git_paths,
        allow_symlinks: statement.serialization.allow_symlinks,
    };
    let local = hash_model(model_path, &hashing)?;
    compare(&statement.files, &local.files)?;
    Ok(Verified {
        key_id: key.key_id().to_string(),
        key_label: key.label.clone(),
        model_digest: format!("sha256:{}", to_hex(&statement.model_digest)),
        model_name: statement.model_name,
        files: statement.files.len(),
    })
}

/// The signed statement must name `expected` as its subject: a bundle signed for one model cannot vouch for another.
pub fn check_model_name(statement: &Statement, expected: &str) -> Result<(), SignatureError> {
    if statement.model_name == expected {
        Ok(())
    } else {
        Err(SignatureError::ModelNameMismatch { expected: expected.to_string(), signed: statement.model_name.clone() })
    }
}

fn parse_signature(bytes: &[u8]) -> Result<p256::ecdsa::Signature, SignatureError> {
    p256::ecdsa::Signature::from_der(bytes).or_else(|_| p256::ecdsa::Signature::from_slice(bytes)).map_err(|_| {
        SignatureError::BundleMalformed {
            field: "dsseEnvelope.signatures[0].sig".into(),
            problem: "is not an ECDSA P-256 signature (DER or 64-byte)".into(),
        }
    })
}

fn compare(signed: &[FileDigest], local: &[FileDigest]) -> Result<(), SignatureError> {
    let signed_map: BTreeMap<&str, &[u8; 32]> = signed.iter().map(|file| (file.name.as_str(), &file.sha256)).collect();
    let local_map: BTreeMap<&str, &[u8; 32]> = local.iter().map(|file| (file.name.as_str(), &file.sha256)).collect();
    let mut changed = Vec::new();
    let mut missing = Vec::new();
    for (name, digest) in &signed_map {
        match local_map.get(name) {
            None => missing.push((*name).to_string()),
            Some(actual) if actual != digest => changed.push(ChangedFile {
                name: (*name).to_string(),
                signed: to_hex(*digest),
                actual: to_hex(*actual),
            }),
            Some(_) => {}
        }
    }
    let added: Vec<String> =
        local_map.keys().filter(|name| !signed_map.contains_key(*name)).map(|name| (*name).to_string()).collect();
    if changed.is_empty() && added.is_empty() && missing.is_empty() {
        Ok(())
    } else {
        Err(SignatureError::ModelMismatch { changed, added, missing })
    }
}

//! Everything that can go wrong while signing or verifying a model, worded so a person knows what changed and what to do.

use std::path::PathBuf;

/// One file whose content no longer matches the digest recorded in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    /// Path relative to the model root, `/`-separated (`.` for a single-file model).
    pub name: String,
    /// Digest recorded in the signed bundle (hex).
    pub signed: String,
    /// Digest of the file on disk now (hex).
    pub actual: String,
}

/// Errors of the signing module. [`SignatureError::is_verification_failure`] separates "the model is not trusted"
/// (exit code 1 of `rampart-check verify`) from usage and I/O problems (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{} is a symbolic link; the bundle does not allow symlinks (sign with symlinks allowed, or replace the link by the file)", path.display())]
    Symlink { path: PathBuf },

    #[error("{} is neither a regular file nor a directory (sockets, pipes and devices cannot be part of a model)", path.display())]
    SpecialFile { path: PathBuf },

    #[error("{} has a name that is not valid UTF-8; rename it, model-signing manifests hold UTF-8 paths only", path.display())]
    NonUtf8Name { path: PathBuf },

    #[error("cannot use key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },

    #[error("no trusted public key was given; pass at least one --key")]
    NoTrustedKeys,

    #[error("the bundle is not valid JSON ({detail}); it may be truncated or not a model-signing bundle at all")]
    BundleNotJson { detail: String },

    #[error("the bundle is malformed: {field} {problem}")]
    BundleMalformed { field: String, problem: String },

    #[error("the bundle uses {what} `{found}`, but only `{supported}` is supported")]
    Unsupported { what: &'static str, found: String, supported: String },

    #[error(
        "the bundle was signed by key {key_id}, which is not a trusted key (trusted: {}); add that public key to the trusted keys only if you trust its owner",
        if trusted.is_empty() { "none".to_string() } else { trusted.join(", ") }
    )]
    UntrustedKey { key_id: String, trusted: Vec<String> },

    #[error(
        "the bundle names no signing key and its signature verifies with none of the trusted keys ({}); it was signed by another key or changed after signing",
        trusted.join(", ")
    )]
    NoKeyVerifies { trusted: Vec<String> },

    #[error(
        "the bundle's signature is invalid for key {key_id}: the bundle (its statement or signature) was changed after signing"
    )]
    SignatureInvalid { key_id: String },

    #[error(
        "the signed statement is inconsistent: its subject digest is sha256:{subject} but its file digests hash to sha256:{computed}"
    )]
    StatementInconsistent { subject: String, computed: String },

    #[error(
        "the rollout expects model digest {expected}, but the bundle signs sha256:{signed}; the rollout and the bundle describe different models"
    )]
    DigestMismatch { expected: String, signed: String },

    #[error(
        "the bundle signs model {signed:?}, but this is model {expected:?}: a signature for one model cannot vouch for another (sign the model under its registry name, or map the signed name explicitly)"
    )]
    ModelNameMismatch { expected: String, signed: String },

    #[error("the expected digest `{value}` is not `sha256:` followed by 64 hex digits")]
    BadDigest { value: String },

    #[error("{}", describe_mismatch(changed, added, missing))]
    ModelMismatch { changed: Vec<ChangedFile>, added: Vec<String>, missing: Vec<String> },

    #[error("signing failed: {0}")]
    Signing(String),

    #[error("cannot write the bundle to {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

fn describe_mismatch(changed: &[ChangedFile], added: &[String], missing: &[String]) -> String {
    let mut parts = Vec::new();
    for file in changed {
        parts.push(format!("file {} changed (signed sha256:{}, now sha256:{})", file.name, file.signed, file.actual));
    }
    if !added.is_empty() {
        parts.push(format!("file(s) added since signing: {}", added.join(", ")));
    }
    if !missing.is_empty() {
        parts.push(format!("file(s) removed since signing: {}", missing.join(", ")));
    }
    format!("the model does not match its signature: {}", parts.join("; "))
}

impl SignatureError {
    /// A short, stable label for metrics (`rampart_signature_failures_total{reason=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Symlink { .. } => "symlink",
            Self::SpecialFile { .. } => "special_file",
            Self::NonUtf8Name { .. } => "non_utf8_name",
            Self::Key { .. } => "key",
            Self::NoTrustedKeys => "no_trusted_keys",
            Self::BundleNotJson { .. } => "bundle_not_json",
            Self::BundleMalformed { .. } => "bundle_malformed",
            Self::Unsupported { .. } => "unsupported",
            Self::UntrustedKey { .. } => "untrusted_key",
            Self::NoKeyVerifies { .. } => "no_key_verifies",
            Self::SignatureInvalid { .. } => "signature_invalid",
            Self::StatementInconsistent { .. } => "statement_inconsistent",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::ModelNameMismatch { .. } => "model_name_mismatch",
            Self::BadDigest { .. } => "bad_digest",
            Self::ModelMismatch { .. } => "model_mismatch",
            Self::Signing(_) => "signing",
            Self::Write { .. } => "write",
        }
    }

    /// True when the error means "this model is not trusted" (tampering, wrong key, bad bundle), false for usage and
    /// I/O problems where nothing was decided.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::Symlink { .. }
                | Self::BundleNotJson { .. }
                | Self::BundleMalformed { .. }
                | Self::Unsupported { .. }
                | Self::UntrustedKey { .. }
                | Self::NoKeyVerifies { .. }
                | Self::SignatureInvalid { .. }
                | Self::StatementInconsistent { .. }
                | Self::DigestMismatch { .. }
                | Self::ModelNameMismatch { .. }
                | Self::ModelMismatch { .. }
        )
    }

    /// The exit code of `verify` and `fetch` for this error: 1 when the model is not trusted, 2 when nothing was decided.
    pub fn exit_code(&self) -> u8 {
        if self.is_verification_failure() { 1 } else { 2 }
    }
}

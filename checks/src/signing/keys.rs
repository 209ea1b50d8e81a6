//! Signing and trusted public keys (ECDSA P-256, PEM), and key ids compatible with the reference tool's key hint.

use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use super::SignatureError;
use super::manifest::to_hex;

/// A private key that signs bundles.
pub struct PrivateKey {
    signing_key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`), P-256, unencrypted.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let text = read_pem(path)?;
        Self::from_pem(&text).map_err(|reason| SignatureError::Key { path: path.to_path_buf(), reason })
    }

    /// Parses a PEM private key; the error says what is wrong with it.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let signing_key = if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            return Err("the key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN.pem)".into());
        } else if text.contains("BEGIN EC PRIVATE KEY") {
            let secret =
                p256::SecretKey::from_sec1_pem(text).map_err(|err| format!("not a P-256 SEC1 private key ({err})"))?;
            SigningKey::from(secret)
        } else if text.contains("BEGIN PRIVATE KEY") {
            SigningKey::from_pkcs8_pem(text).map_err(|err| {
                format!("not an ECDSA P-256 private key in PKCS#8 PEM ({err}); only P-256 keys are supported")
            })?
        } else {
            return Err("no PEM private key found (expected `-----BEGIN PRIVATE KEY-----`)".into());
        };
        let key_id = key_id(signing_key.verifying_key()).map_err(|err| err.to_string())?;
        Ok(Self { signing_key, key_id })
    }

    /// Builds a key from a raw 32-byte P-256 scalar (tests and tools).
    pub fn from_scalar_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        let signing_key = SigningKey::from_slice(bytes).map_err(|err| format!("invalid P-256 scalar ({err})"))?;
        let key_id = key_id(signing_key.verifying_key()).map_err(|err| err.to_string())?;
        Ok(Self { signing_key, key_id })
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The key as unencrypted PKCS#8 PEM (for tools and tests that write key files).
    pub fn to_pkcs8_pem(&self) -> Result<String, String> {
        use p256::pkcs8::EncodePrivateKey;
        self.signing_key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|err| format!("cannot encode the private key ({err})"))
    }

    /// The key id of the matching public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The matching public key as SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> Result<String, String> {
        self.signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| format!("cannot encode the public key ({err})"))
    }
}

/// A public key the verifier trusts, with where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    verifying_key: VerifyingKey,
    key_id: String,
    /// Where the key came from (a file path, a ConfigMap key...), shown in reports.
    pub label: String,
}

impl TrustedKey {
    /// Reads a PEM public key (`BEGIN PUBLIC KEY`, P-256).
    pub fn from_pem_file(path: &Path) -> Result<Self, SignatureError> {
        let text = read_pem(path)?;
        Self::from_pem(&text, &path.display().to_string())
            .map_err(|reason| SignatureError::Key { path: path.to_path_buf(), reason })
    }

    /// Parses a PEM public key; `label` says where it came from.
    pub fn from_pem(text: &str, label: &str) -> Result<Self, String> {
        if !text.contains("BEGIN PUBLIC KEY") {
            return Err("no PEM public key found (expected `-----BEGIN PUBLIC KEY-----`)".into());
        }
        let verifying_key = VerifyingKey::from_public_key_pem(text)
            .map_err(|err| format!("not an ECDSA P-256 public key in PEM ({err}); only P-256 keys are supported"))?;
        let key_id = key_id(&verifying_key).map_err(|err| err.to_string())?;
        Ok(Self { verifying_key, key_id, label: label.to_string() })
    }

    /// Parses every PEM public key in `text` (several `BEGIN PUBLIC KEY` blocks, as the controller hands its trusted
    /// keys to a fetching init container in one environment variable). Keys are labelled `label#N`.
    pub fn all_from_pem(text: &str, label: &str) -> Result<Vec<Self>, String> {
        const END: &str = "-----END PUBLIC KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN PUBLIC KEY-----") {
            let block = &rest[start..];
            let end = block.find(END).ok_or("a PEM public key block has no END line")? + END.len();
            keys.push(Self::from_pem(&block[..end], &format!("{label}#{}", keys.len() + 1))?);
            rest = &block[end..];
        }
        if keys.is_empty() {
            return Err("no PEM public key found (expected `-----BEGIN PUBLIC KEY-----`)".into());
        }
        Ok(keys)
    }

    /// The public half of a private key (tests and tools).
    pub fn from_private(key: &PrivateKey, label: &str) -> Self {
        Self { verifying_key: *key.signing_key.verifying_key(), key_id: key.key_id.clone(), label: label.to_string() }
    }

    /// The key as SubjectPublicKeyInfo PEM (to hand it to a fetching init container).
    pub fn to_pem(&self) -> Result<String, String> {
        self.verifying_key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| format!("cannot encode the public key ({err})"))
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    /// The key id: sha256 (hex) of the key's SubjectPublicKeyInfo PEM text, the value the reference tool writes as the
    /// bundle's public key hint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// sha256 hex of the SubjectPublicKeyInfo PEM (64-column lines, `\n` endings, trailing newline).
pub fn key_id(key: &VerifyingKey) -> Result<String, SignatureError> {
    let pem = key.to_public_key_pem(LineEnding::LF).map_err(|err| SignatureError::Key {
        path: PathBuf::from("<public key>"),
        reason: format!("cannot encode the public key ({err})"),
    })?;
    Ok(to_hex(&Sha256::digest(pem.as_bytes())))
}

fn read_pem(path: &Path) -> Result<String, SignatureError> {
    let bytes = std::fs::read(path).map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
    if bytes.len() > 64 * 1024 {
        return Err(SignatureError::Key { path: path.to_path_buf(), reason: "too large to be a PEM key".into() });
    }
    String::from_utf8(bytes).map_err(|_| SignatureError::Key {
        path: path.to_path_buf(),
        reason: "not a text PEM file (DER keys are not supported; convert with openssl)".into(),
    })
}

//! The model-signing v1.0 bundle: a Sigstore bundle (v0.3 media type) holding a DSSE envelope whose payload is an
//! in-toto statement listing the model's files. Parsing here is strict and never panics on hostile input.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::SignatureError;
use super::manifest::{FileDigest, ModelManifest, digest_of_digests, normalise_relative, parse_sha256_hex, to_hex};

/// Sigstore bundle media type the reference tool writes for key-based signatures.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// model-signing predicate type, v1.0.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The largest bundle accepted (a manifest of a very large directory stays far below this).
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The DSSE pre-authentication encoding: what the signature actually covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The serialization parameters recorded in the predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
}

/// The signed statement, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The subject name (the model's file or directory name when signed; informative only).
    pub model_name: String,
    /// The subject digest (sha256 over the resources' digests).
    pub model_digest: [u8; 32],
    pub serialization: Serialization,
    /// The resources in the order they were signed.
    pub files: Vec<FileDigest>,
}

/// A parsed bundle, not yet verified.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The key hint (sha256 of the signer's public key PEM), when the bundle carries one.
    pub key_hint: Option<String>,
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Builds the in-toto statement JSON for a manifest.
pub fn statement_json(manifest: &ModelManifest, serialization: &Serialization) -> Value {
    let resources: Vec<Value> = manifest
        .files
        .iter()
        .map(|file| json!({"name": file.name, "algorithm": "sha256", "digest": to_hex(&file.sha256)}))
        .collect();
    let mut serialization_json = Map::new();
    serialization_json.insert("method".into(), json!("files"));
    serialization_json.insert("hash_type".into(), json!("sha256"));
    serialization_json.insert("allow_symlinks".into(), json!(serialization.allow_symlinks));
    if !serialization.ignore_paths.is_empty() {
        serialization_json.insert("ignore_paths".into(), json!(serialization.ignore_paths));
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name, "digest": {"sha256": to_hex(&manifest.model_digest())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"serialization": Value::Object(serialization_json), "resources": resources},
    })
}

/// Builds the bundle JSON around a signed payload.
pub fn bundle_json(payload: &[u8], signature_der: &[u8], key_hint: &str) -> Value {
    json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": BASE64.encode(payload),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": BASE64.encode(signature_der), "keyid": ""}],
        },
    })
}

fn malformed(field: &str, problem: impl Into<String>) -> SignatureError {
    SignatureError::BundleMalformed { field: field.to_string(), problem: problem.into() }
}

fn get<'a>(object: &'a Value, key: &str, field: &str) -> Result<&'a Value, SignatureError> {
    object.get(key).ok_or_else(|| malformed(field, "is missing"))
}

fn get_str<'a>(object: &'a Value, key: &str, field: &str) -> Result<&'a str, SignatureError> {
    get(object, key, field)?.as_str().ok_or_else(|| malformed(field, "is not a string"))
}

fn get_array<'a>(object: &'a Value, key: &str, field: &str) -> Result<&'a Vec<Value>, SignatureError> {
    get(object, key, field)?.as_array().ok_or_else(|| malformed(field, "is not a list"))
}

fn decode_base64(text: &str, field: &str) -> Result<Vec<u8>, SignatureError> {
    BASE64.decode(text.trim()).map_err(|err| malformed(field, format!("is not valid base64 ({err})")))
}

impl Bundle {
    /// Parses bundle bytes. Checks structure and media type; does not check the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(malformed("bundle", format!("is larger than {MAX_BUNDLE_BYTES} bytes")));
        }
        let root: Value =
            serde_json::from_slice(bytes).map_err(|err| SignatureError::BundleNotJson { detail: err.to_string() })?;
        if !root.is_object() {
            return Err(malformed("bundle", "is not a JSON object"));
        }
        let media_type = get_str(&root, "mediaType", "mediaType")?;
        if media_type != BUNDLE_MEDIA_TYPE {
            return Err(SignatureError::Unsupported {
                what: "bundle media type",
                found: media_type.to_string(),
                supported: BUNDLE_MEDIA_TYPE.to_string(),
            });
        }
        let material = get(&root, "verificationMaterial", "verificationMaterial")?;
        let key_hint = match material.get("publicKey") {
            None | Some(Value::Null) => {
                if material.get("certificate").is_some() || material.get("x509CertificateChain").is_some() {
                    return Err(SignatureError::Unsupported {
                        what: "verification material",
                        found: "certificate".into(),
                        supported: "publicKey (key-based signing)".into(),
                    });
                }
                return Err(malformed("verificationMaterial.publicKey", "is missing (not a key-based bundle)"));
            }
            Some(public_key) => match public_key.get("hint") {
                None | Some(Value::Null) => None,
                Some(Value::String(hint)) if hint.is_empty() => None,
                Some(Value::String(hint)) => Some(hint.to_ascii_lowercase()),
                Some(_) => {
                    return Err(malformed("verificationMaterial.publicKey.hint", "is not a string"));
                }
            },
        };
        let envelope = get(&root, "dsseEnvelope", "dsseEnvelope")?;
        if !envelope.is_object() {
            return Err(malformed("dsseEnvelope", "is not an object (message-signature bundles are not supported)"));
        }
        let payload_type = get_str(envelope, "payloadType", "dsseEnvelope.payloadType")?.to_string();
        let payload = decode_base64(get_str(envelope, "payload", "dsseEnvelope.payload")?, "dsseEnvelope.payload")?;
        let signatures = get_array(envelope, "signatures", "dsseEnvelope.signatures")?;
        let first = match signatures.as_slice() {
            [] => {
                return Err(malformed("dsseEnvelope.signatures", "is empty: the bundle is not signed"));
            }
            [first] => first,
            _ => {
                return Err(malformed("dsseEnvelope.signatures", "holds more than one signature (unsupported)"));
            }
        };
        let signature =
            decode_base64(get_str(first, "sig", "dsseEnvelope.signatures[0].sig")?, "dsseEnvelope.signatures[0].sig")?;
        if signature.is_empty() {
            return Err(malformed("dsseEnvelope.signatures[0].sig", "is empty"));
        }
        Ok(Self { key_hint, payload_type, payload, signature })
    }

    /// Decodes the (already authenticated) payload into a statement and checks its internal consistency.
    pub fn statement(&self) -> Result<Statement, SignatureError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(SignatureError::Unsupported {
                what: "DSSE payload type",
                found: self.payload_type.clone(),
                supported: PAYLOAD_TYPE.into(),
            });
        }
        let statement: Value = serde_json::from_slice(&self.payload)
            .map_err(|err| malformed("dsseEnvelope.payload", format!("is not JSON ({err})")))?;
        let statement_type = get_str(&statement, "_type", "statement._type")?;
        if statement_type != STATEMENT_TYPE {
            return Err(SignatureError::Unsupported {
                what: "in-toto statement type",
                found: statement_type.into(),
                supported: STATEMENT_TYPE.into(),
            });
        }
        let predicate_type = get_str(&statement, "predicateType", "statement.predicateType")?;
        if predicate_type != PREDICATE_TYPE {
            return Err(SignatureError::Unsupported {
                what: "predicate type",
                found: predicate_type.into(),
                supported: PREDICATE_TYPE.into(),
            });
        }
        let subjects = get_array(&statement, "subject", "statement.subject")?;
        let [subject] = subjects.as_slice() else {
            return Err(malformed("statement.subject", format!("holds {} subjects, expected one", subjects.len())));
        };
        let model_name = get_str(subject, "name", "statement.subject[0].name")?.to_string();
        let subject_digest = get(subject, "digest", "statement.subject[0].digest")?;
        let subject_hex = get_str(subject_digest, "sha256", "statement.subject[0].digest.sha256")?;
        let model_digest = parse_sha256_hex(subject_hex)
            .ok_or_else(|| malformed("statement.subject[0].digest.sha256", "is not 64 hex digits"))?;

        let predicate = get(&statement, "predicate", "statement.predicate")?;
        let serialization_json = get(predicate, "serialization", "predicate.serialization")?;
        let method = get_str(serialization_json, "method", "predicate.serialization.method")?;
        if method != "files" {
            return Err(SignatureError::Unsupported {
                what: "serialization method",
                found: method.into(),
                supported: "files (re-sign without sharding)".into(),
            });
        }
        let hash_type = get_str(serialization_json, "hash_type", "predicate.serialization.hash_type")?;
        if hash_type != "sha256" {
            return Err(SignatureError::Unsupported {
                what: "hash type",
                found: hash_type.into(),
                supported: "sha256".into(),
            });
        }
        let allow_symlinks = get(serialization_json, "allow_symlinks", "predicate.serialization.allow_symlinks")?
            .as_bool()
            .ok_or_else(|| malformed("predicate.serialization.allow_symlinks", "is not true or false"))?;
        let ignore_paths = match serialization_json.get("ignore_paths") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| malformed("predicate.serialization.ignore_paths", "holds a non-string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(malformed("predicate.serialization.ignore_paths", "is not a list"));
            }
        };

        let resources = get_array(predicate, "resources", "predicate.resources")?;
        let mut files = Vec::with_capacity(resources.len());
        let mut seen = std::collections::HashSet::new();
        for (i, resource) in resources.iter().enumerate() {
            let field = format!("predicate.resources[{i}]");
            let name = get_str(resource, "name", &format!("{field}.name"))?;
            let algorithm = get_str(resource, "algorithm", &format!("{field}.algorithm"))?;
            if algorithm != "sha256" {
                return Err(SignatureError::Unsupported {
                    what: "resource digest algorithm",
                    found: algorithm.into(),
                    supported: "sha256".into(),
                });
            }
            let digest = get_str(resource, "digest", &format!("{field}.digest"))?;
            let sha256 = parse_sha256_hex(digest)
                .ok_or_else(|| malformed(&format!("{field}.digest"), "is not 64 hex digits"))?;
            let canonical = match normalise_relative(name) {
                Some(components) if components.is_empty() => ".".to_string(),
                Some(components) => components.join("/"),
                None => {
                    return Err(malformed(&format!("{field}.name"), format!("`{name}` escapes the model")));
                }
            };
            if !seen.insert(canonical.clone()) {
                return Err(malformed(&format!("{field}.name"), format!("`{name}` is listed twice")));
            }
            files.push(FileDigest { name: canonical, sha256 });
        }
        let computed = digest_of_digests(files.iter().map(|file| &file.sha256));
        if computed != model_digest {
            return Err(SignatureError::StatementInconsistent {
                subject: to_hex(&model_digest),
                computed: to_hex(&computed),
            });
        }
        Ok(Statement { model_name, model_digest, serialization: Serialization { allow_symlinks, ignore_paths }, files })
    }
}

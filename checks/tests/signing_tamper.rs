//! Signing and verification in Rust alone: a signed model verifies, and every kind of tampering fails with an error
//! that names what changed. Also the `rampart-check sign`/`verify` exit codes.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rampart_checks::signing::{
    HashingOptions, PrivateKey, SignatureError, TrustedKey, VerifyOptions, model_digest, sign_model, verify_model,
};
use serde_json::Value;

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_scalar_bytes(&[n; 32]).unwrap()
}

fn trusted(n: u8) -> TrustedKey {
    TrustedKey::from_private(&key(n), &format!("key-{n}"))
}

/// A small model directory: nested files and git metadata that is left out.
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("model/tokenizer")).unwrap();
    std::fs::create_dir_all(root.join("model/.git")).unwrap();
    std::fs::write(root.join("model/model.onnx"), vec![7u8; 4096]).unwrap();
    std::fs::write(root.join("model/config.json"), br#"{"layers": 4}"#).unwrap();
    std::fs::write(root.join("model/tokenizer/vocab.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(root.join("model/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    dir
}

fn sign(model: &Path, n: u8) -> String {
    sign_model(model, &key(n), &HashingOptions::default()).unwrap().bundle_json
}

fn verify(
    model: &Path,
    bundle: &str,
    keys: &[TrustedKey],
) -> Result<rampart_checks::signing::Verified, SignatureError> {
    verify_model(model, bundle.as_bytes(), keys, &VerifyOptions::default())
}

/// Rewrites the bundle's decoded statement with `edit`, keeping the old signature.
fn edit_statement(bundle: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut root: Value = serde_json::from_str(bundle).unwrap();
    let payload = BASE64.decode(root["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let mut statement: Value = serde_json::from_slice(&payload).unwrap();
    edit(&mut statement);
    root["dsseEnvelope"]["payload"] = Value::String(BASE64.encode(serde_json::to_vec(&statement).unwrap()));
    root.to_string()
}

#[test]
fn signed_directory_verifies_and_names_the_key_that_signed_among_several() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let signed = sign_model(&model, &key(2), &HashingOptions::default()).unwrap();
    assert_eq!(signed.files, 3, "git metadata is left out");
    let verified = verify(&model, &signed.bundle_json, &[trusted(1), trusted(2), trusted(3)]).unwrap();
    assert_eq!(verified.key_label, "key-2");
    assert_eq!(verified.key_id, trusted(2).key_id());
    assert_eq!(verified.model_digest, signed.model_digest);
    assert_eq!(verified.model_digest, model_digest(&model).unwrap());
    assert_eq!(verified.files, 3);
}

#[test]
fn signed_single_file_verifies() {
    let dir = model_dir();
    let file = dir.path().join("model/model.onnx");
    let bundle = sign(&file, 1);
    assert!(verify(&file, &bundle, &[trusted(1)]).is_ok());
}

#[test]
fn a_changed_byte_in_any_file_names_that_file() {
    for victim in ["model.onnx", "config.json", "tokenizer/vocab.txt"] {
        let dir = model_dir();
        let model = dir.path().join("model");
        let bundle = sign(&model, 1);
        let path = model.join(victim);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let err = verify(&model, &bundle, &[trusted(1)]).unwrap_err();
        match &err {
            SignatureError::ModelMismatch { changed, added, missing } => {
                assert_eq!(changed.len(), 1, "{err}");
                assert_eq!(changed[0].name, victim);
                assert!(added.is_empty() && missing.is_empty());
            }
            other => panic!("expected a model mismatch, got {other}"),
        }
        assert!(err.to_string().contains(&format!("file {victim} changed")), "{err}");
        assert!(err.is_verification_failure());
    }
}

#[test]
fn an_added_or_removed_file_is_named() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    std::fs::write(model.join("tokenizer/extra.txt"), "new").unwrap();
    let err = verify(&model, &bundle, &[trusted(1)]).unwrap_err();
    assert!(err.to_string().contains("added since signing: tokenizer/extra.txt"), "{err}");

    std::fs::remove_file(model.join("tokenizer/extra.txt")).unwrap();
    std::fs::remove_file(model.join("config.json")).unwrap();
    let err = verify(&model, &bundle, &[trusted(1)]).unwrap_err();
    assert!(err.to_string().contains("removed since signing: config.json"), "{err}");
}

#[test]
fn files_under_git_metadata_may_change_without_breaking_the_signature() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    std::fs::write(model.join(".git/HEAD"), "changed").unwrap();
    std::fs::write(model.join(".gitignore"), "*.tmp").unwrap();
    assert!(verify(&model, &bundle, &[trusted(1)]).is_ok());
}

#[test]
fn a_changed_statement_invalidates_the_bundle_signature() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    // An attacker who swaps a file must also change its digest in the statement: the signature then fails.
    let forged = edit_statement(&bundle, |statement| {
        statement["predicate"]["resources"][0]["digest"] = Value::String("00".repeat(32));
    });
    let err = verify(&model, &forged, &[trusted(1)]).unwrap_err();
    assert!(matches!(err, SignatureError::SignatureInvalid { .. }), "{err}");
    assert!(err.to_string().contains("changed after signing"), "{err}");
}

#[test]
fn a_changed_signature_is_invalid() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    let mut root: Value = serde_json::from_str(&bundle).unwrap();
    let other = sign(&dir.path().join("model/config.json"), 1);
    let other: Value = serde_json::from_str(&other).unwrap();
    root["dsseEnvelope"]["signatures"][0]["sig"] = other["dsseEnvelope"]["signatures"][0]["sig"].clone();
    let err = verify(&model, &root.to_string(), &[trusted(1)]).unwrap_err();
    assert_eq!(err.metric_label(), "signature_invalid", "{err}");
}

#[test]
fn a_signature_from_an_untrusted_key_names_that_key() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 9);
    let err = verify(&model, &bundle, &[trusted(1), trusted(2)]).unwrap_err();
    match &err {
        SignatureError::UntrustedKey { key_id, trusted: listed } => {
            assert_eq!(key_id, trusted(9).key_id());
            assert_eq!(listed.len(), 2);
        }
        other => panic!("expected an untrusted key, got {other}"),
    }
    assert!(err.to_string().contains(trusted(9).key_id()), "{err}");
}

#[test]
fn a_bundle_without_key_hint_is_checked_against_every_trusted_key() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 2);
    let mut root: Value = serde_json::from_str(&bundle).unwrap();
    root["verificationMaterial"]["publicKey"] = serde_json::json!({});
    let without_hint = root.to_string();
    assert_eq!(verify(&model, &without_hint, &[trusted(1), trusted(2)]).unwrap().key_label, "key-2");
    let err = verify(&model, &without_hint, &[trusted(1), trusted(3)]).unwrap_err();
    assert_eq!(err.metric_label(), "no_key_verifies", "{err}");
}

#[test]
fn truncated_and_non_json_bundles_are_reported_as_such() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    let err = verify(&model, &bundle[..bundle.len() / 2], &[trusted(1)]).unwrap_err();
    assert!(matches!(err, SignatureError::BundleNotJson { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = verify(&model, "this is not a bundle", &[trusted(1)]).unwrap_err();
    assert!(matches!(err, SignatureError::BundleNotJson { .. }), "{err}");
    let err = verify(&model, "", &[trusted(1)]).unwrap_err();
    assert!(matches!(err, SignatureError::BundleNotJson { .. }), "{err}");
}

#[test]
fn wrong_typed_fields_are_named() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let bundle = sign(&model, 1);
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 5] = [
        ("dsseEnvelope.payload", |v| v["dsseEnvelope"]["payload"] = Value::from(42)),
        ("dsseEnvelope.signatures", |v| v["dsseEnvelope"]["signatures"] = Value::from("sig")),
        ("dsseEnvelope.signatures", |v| v["dsseEnvelope"]["signatures"] = Value::Array(vec![])),
        ("mediaType", |v| v["mediaType"] = Value::Null),
        ("dsseEnvelope.signatures[0].sig", |v| v["dsseEnvelope"]["signatures"][0]["sig"] = Value::from("!!")),
    ];
    for (field, edit) in cases {
        let mut root: Value = serde_json::from_str(&bundle).unwrap();
        edit(&mut root);
        let err = verify(&model, &root.to_string(), &[trusted(1)]).unwrap_err();
        assert!(err.to_string().contains(field), "expected {field} in: {err}");
        assert!(err.is_verification_failure());
    }
    let err = verify(&model, "[1, 2]", &[trusted(1)]).unwrap_err();
    assert_eq!(err.metric_label(), "bundle_malformed");
}

#[test]
fn no_mutation_of_a_bundle_makes_verification_panic_or_pass() {
    let dir = model_dir();
    let model = dir.path().join("model/config.json");
    let bundle = sign(&model, 1);
    let bytes = bundle.as_bytes();
    for cut in (0..bytes.len()).step_by(7) {
        assert!(verify_model(&model, &bytes[..cut], &[trusted(1)], &VerifyOptions::default()).is_err());
    }
    for position in (0..bytes.len()).step_by(3) {
        let mut mutated = bytes.to_vec();
        mutated[position] = mutated[position].wrapping_add(1);
        if let Ok(verified) = verify_model(&model, &mutated, &[trusted(1)], &VerifyOptions::default()) {
            // Only changes outside the signed content (whitespace, the unsigned keyid) may still verify.
            assert_eq!(verified.key_label, "key-1");
            let original: Value = serde_json::from_str(&bundle).unwrap();
            let mutated: Value = serde_json::from_slice(&mutated).unwrap();
            assert_eq!(original["dsseEnvelope"]["payload"], mutated["dsseEnvelope"]["payload"]);
        }
    }
}

#[test]
fn the_digest_named_by_the_rollout_must_be_the_signed_one() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let signed = sign_model(&model, &key(1), &HashingOptions::default()).unwrap();
    let options = VerifyOptions { expected_digest: Some(signed.model_digest.clone()), ..VerifyOptions::default() };
    assert!(verify_model(&model, signed.bundle_json.as_bytes(), &[trusted(1)], &options).is_ok());

    let other = format!("sha256:{}", "ab".repeat(32));
    let options = VerifyOptions { expected_digest: Some(other.clone()), ..VerifyOptions::default() };
    let err = verify_model(&model, signed.bundle_json.as_bytes(), &[trusted(1)], &options).unwrap_err();
    assert!(matches!(err, SignatureError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&other) && err.to_string().contains("different models"), "{err}");

    let options = VerifyOptions { expected_digest: Some("sha256:nothex".into()), ..VerifyOptions::default() };
    let err = verify_model(&model, signed.bundle_json.as_bytes(), &[trusted(1)], &options).unwrap_err();
    assert_eq!(err.metric_label(), "bad_digest");
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused_unless_signed_as_allowed() {
    let dir = model_dir();
    let model = dir.path().join("model");
    std::os::unix::fs::symlink(model.join("config.json"), model.join("link.json")).unwrap();
    let err = sign_model(&model, &key(1), &HashingOptions::default()).unwrap_err();
    assert_eq!(err.metric_label(), "symlink", "{err}");
    let options = HashingOptions { allow_symlinks: true, ..HashingOptions::default() };
    let signed = sign_model(&model, &key(1), &options).unwrap();
    assert_eq!(signed.files, 4);
    assert!(verify(&model, &signed.bundle_json, &[trusted(1)]).is_ok());
}

#[test]
fn large_files_are_hashed_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.bin");
    let content: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| u8::try_from(i % 251).unwrap()).collect();
    std::fs::write(&path, &content).unwrap();
    let streamed = rampart_checks::signing::hash_file(&path).unwrap();
    let whole: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&content).into();
    assert_eq!(streamed, whole);
}

// ---- the command line ----

fn write_keys(dir: &Path, n: u8) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("key{n}.pem"));
    let public = dir.join(format!("key{n}.pub.pem"));
    std::fs::write(&private, key(n).to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(&public, key(n).public_key_pem().unwrap()).unwrap();
    (private, public)
}

fn rampart_check(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-check")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn cli_exit_codes_are_0_verified_1_not_verified_2_usage_or_io() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let (private1, public1) = write_keys(dir.path(), 1);
    let (_, public2) = write_keys(dir.path(), 2);
    let bundle = dir.path().join("model.sig");
    let (code, text) = rampart_check(&[
        "sign".as_ref(),
        "--key".as_ref(),
        private1.as_os_str(),
        "--out".as_ref(),
        bundle.as_os_str(),
        model.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("model digest: sha256:"), "{text}");

    let verify_args = |keys: &[&PathBuf]| {
        let mut args: Vec<std::ffi::OsString> = vec!["verify".into()];
        for key in keys {
            args.push("--key".into());
            args.push(key.as_os_str().into());
        }
        args.extend(["--bundle".into(), bundle.as_os_str().into(), model.as_os_str().into()]);
        args
    };
    let run = |args: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        rampart_check(&refs)
    };
    let (code, text) = run(verify_args(&[&public2, &public1]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&public1.display().to_string()), "names the key that signed: {text}");
    let mut json_args = verify_args(&[&public1]);
    json_args.insert(1, "--json".into());
    let (code, text) = run(json_args);
    assert_eq!(code, 0, "{text}");
    let report: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["keyId"], trusted(1).key_id());

    let (code, text) = run(verify_args(&[&public2]));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a trusted key"), "{text}");

    std::fs::write(model.join("config.json"), "{}").unwrap();
    let (code, text) = run(verify_args(&[&public1]));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("file config.json changed"), "{text}");

    let mut json_args = verify_args(&[&public1]);
    json_args.insert(1, "--json".into());
    let (code, text) = run(json_args);
    assert_eq!(code, 1, "{text}");
    let report: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(report["verified"], false);
    assert_eq!(report["label"], "model_mismatch");

    let missing = dir.path().join("missing.pem");
    let (code, text) = run(verify_args(&[&missing]));
    assert_eq!(code, 2, "{text}");
    let (code, _) = rampart_check(&["verify".as_ref(), model.as_os_str()]);
    assert_eq!(code, 2, "missing required options is a usage error");
}

#[test]
fn cli_leaves_a_bundle_written_inside_the_model_directory_out_of_the_manifest() {
    let dir = model_dir();
    let model = dir.path().join("model");
    let (private, public) = write_keys(dir.path(), 1);
    let bundle = model.join("model.sig");
    let (code, text) = rampart_check(&[
        "sign".as_ref(),
        "--key".as_ref(),
        private.as_os_str(),
        "--out".as_ref(),
        bundle.as_os_str(),
        model.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = rampart_check(&[
        "verify".as_ref(),
        "--key".as_ref(),
        public.as_os_str(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
        model.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
}

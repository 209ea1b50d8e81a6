//! Interoperability with the reference OpenSSF model-signing tool (PyPI `model-signing` 1.1.1, key-based method):
//! its bundles verify with Rampart, and Rampart's bundles verify with it.
//!
//! The tool is found through `RAMPART_MODEL_SIGNING_PYTHON` (a Python with `model-signing` and `pyopenssl`
//! installed; default `python3`). Without it the tests print a notice and pass, except under `CI=true`, where a
//! missing tool fails them: CI must prove interoperability.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_checks::signing::{
    HashingOptions, PrivateKey, SignatureError, TrustedKey, VerifyOptions, model_digest, sign_model, verify_model,
};

fn helper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/reference_tool.py")
}

/// The Python that has the reference tool, or `None` (after printing why) when the test should be skipped.
fn reference_python() -> Option<String> {
    let python = std::env::var("RAMPART_MODEL_SIGNING_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).arg(helper_script()).arg("check").output();
    let problem = match probe {
        Ok(out) if out.status.success() => return Some(python),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(err) => format!("cannot run `{python}`: {err}"),
    };
    let message = format!(
        "the reference model-signing tool is not available ({problem}). Install it with \
         `pip install model-signing==1.1.1 pyopenssl` and point RAMPART_MODEL_SIGNING_PYTHON at that Python"
    );
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{message} (CI=true: interoperability must be tested)");
    }
    eprintln!("SKIPPED: {message}");
    None
}

fn reference(python: &str, action: &str, key: &Path, bundle: &Path, model: &Path) -> (bool, String) {
    let out = Command::new(python).arg(helper_script()).arg(action).arg(key).arg(bundle).arg(model).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn write_keys(dir: &Path, n: u8) -> (PathBuf, PathBuf, PrivateKey) {
    let key = PrivateKey::from_scalar_bytes(&[n; 32]).unwrap();
    let private = dir.join(format!("key{n}.pem"));
    let public = dir.join(format!("key{n}.pub.pem"));
    std::fs::write(&private, key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(&public, key.public_key_pem().unwrap()).unwrap();
    (private, public, key)
}

/// A model directory whose content varies with `n` (so signatures vary too), with nesting, names that sort
/// differently by string and by path component (`a.b` vs `a/b`), and git metadata.
fn model_dir(root: &Path, n: usize) -> PathBuf {
    let model = root.join(format!("model-{n}"));
    std::fs::create_dir_all(model.join("a")).unwrap();
    std::fs::create_dir_all(model.join(".git")).unwrap();
    std::fs::write(model.join("a/b"), format!("nested {n}")).unwrap();
    std::fs::write(model.join("a.b"), format!("dotted {n}")).unwrap();
    std::fs::write(model.join("weights.safetensors"), vec![u8::try_from(n % 256).unwrap(); 10_000]).unwrap();
    std::fs::write(model.join(".git/HEAD"), "ref").unwrap();
    model
}

#[test]
fn bundles_made_by_the_reference_tool_verify_with_rampart() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = write_keys(dir.path(), 5);
    let trusted = [TrustedKey::from_pem_file(&public).unwrap()];
    // Several models, so that both "low" and "high" ECDSA s values from the reference signer are exercised.
    for n in 0..6 {
        let model = model_dir(dir.path(), n);
        let bundle = dir.path().join(format!("model-{n}.sig"));
        let (ok, text) = reference(&python, "sign", &private, &bundle, &model);
        assert!(ok, "reference signing failed: {text}");
        let bytes = std::fs::read(&bundle).unwrap();
        let verified = verify_model(&model, &bytes, &trusted, &VerifyOptions::default())
            .unwrap_or_else(|err| panic!("model {n}: {err}"));
        assert_eq!(verified.files, 3);
        assert_eq!(verified.model_digest, model_digest(&model).unwrap(), "same digest definition as the reference");
    }
}

#[test]
fn a_single_file_signed_by_the_reference_tool_verifies_with_rampart_and_its_digest_matches() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = write_keys(dir.path(), 6);
    let file = dir.path().join("model.onnx");
    std::fs::write(&file, b"onnx bytes").unwrap();
    let bundle = dir.path().join("model.sig");
    let (ok, text) = reference(&python, "sign", &private, &bundle, &file);
    assert!(ok, "{text}");
    let trusted = [TrustedKey::from_pem_file(&public).unwrap()];
    let options = VerifyOptions { expected_digest: Some(model_digest(&file).unwrap()), ..VerifyOptions::default() };
    verify_model(&file, &std::fs::read(&bundle).unwrap(), &trusted, &options).unwrap();
}

#[test]
fn a_reference_bundle_stored_inside_the_model_directory_verifies_with_the_rampart_cli() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = write_keys(dir.path(), 7);
    let model = model_dir(dir.path(), 1);
    let bundle = model.join("model.sig");
    let (ok, text) = reference(&python, "sign", &private, &bundle, &model);
    assert!(ok, "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .args(["verify", "--key"])
        .arg(&public)
        .arg("--bundle")
        .arg(&bundle)
        .arg(&model)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
}

#[test]
fn tampering_with_a_reference_signed_model_is_caught_by_rampart() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = write_keys(dir.path(), 8);
    let model = model_dir(dir.path(), 2);
    let bundle = dir.path().join("model.sig");
    let (ok, text) = reference(&python, "sign", &private, &bundle, &model);
    assert!(ok, "{text}");
    std::fs::write(model.join("a/b"), "swapped").unwrap();
    let trusted = [TrustedKey::from_pem_file(&public).unwrap()];
    let err = verify_model(&model, &std::fs::read(&bundle).unwrap(), &trusted, &VerifyOptions::default()).unwrap_err();
    assert!(matches!(err, SignatureError::ModelMismatch { .. }), "{err}");
    assert!(err.to_string().contains("file a/b changed"), "{err}");
}

#[test]
fn bundles_made_by_rampart_verify_with_the_reference_tool() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, public, key) = write_keys(dir.path(), 9);
    for n in 0..4 {
        let model = model_dir(dir.path(), n);
        let bundle = dir.path().join(format!("rampart-{n}.sig"));
        let signed = sign_model(&model, &key, &HashingOptions::default()).unwrap();
        std::fs::write(&bundle, signed.bundle_json).unwrap();
        let (ok, text) = reference(&python, "verify", &public, &bundle, &model);
        assert!(ok, "model {n}: the reference tool refused Rampart's bundle: {text}");
    }
    // A single file, and a bundle signed by the CLI inside the model directory.
    let file = dir.path().join("model-0/weights.safetensors");
    let bundle = dir.path().join("single.sig");
    std::fs::write(&bundle, sign_model(&file, &key, &HashingOptions::default()).unwrap().bundle_json).unwrap();
    let (ok, text) = reference(&python, "verify", &public, &bundle, &file);
    assert!(ok, "{text}");

    let model = model_dir(dir.path(), 10);
    let inside = model.join("model.sig");
    let private = dir.path().join("key9.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .args(["sign", "--key"])
        .arg(&private)
        .arg("--out")
        .arg(&inside)
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, text) = reference(&python, "verify", &public, &inside, &model);
    assert!(ok, "{text}");
}

#[test]
fn the_reference_tool_rejects_a_rampart_bundle_after_tampering() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, public, key) = write_keys(dir.path(), 11);
    let model = model_dir(dir.path(), 3);
    let bundle = dir.path().join("model.sig");
    std::fs::write(&bundle, sign_model(&model, &key, &HashingOptions::default()).unwrap().bundle_json).unwrap();
    std::fs::write(model.join("extra.bin"), "added").unwrap();
    let (ok, text) = reference(&python, "verify", &public, &bundle, &model);
    assert!(!ok, "the reference tool accepted a tampered model: {text}");
}

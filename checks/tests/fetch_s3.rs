//! `rampart-check fetch` against a real S3 server (SeaweedFS, started by the test environment): the verified copy holds
//! exactly the signed bytes; a replaced, extra or missing object, another model's files under a trusted bundle, and a
//! bundle signed for another model name are all refused, by name, before anything is kept.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rampart_checks::signing::{PrivateKey, SignRequest, sign_to_file};
use serde_json::Value;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn s3() -> &'static rampart_testenv::S3Server {
    rampart_testenv::shared_s3().unwrap()
}

/// A bucket no other test uses.
fn bucket(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    s3().create_bucket(&name).unwrap();
    name
}

fn fetch(args: &[&str], env: &[(String, String)]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .arg("fetch")
        .args(args)
        .env_remove("AWS_ALLOW_HTTP")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A model directory: `weights.bin` (`size` random-ish bytes), `config.json`, `tokenizer/vocab.txt`.
fn write_model(dir: &Path, size: usize, seed: u8) {
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    let weights: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    std::fs::write(dir.join("weights.bin"), weights).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"seed\": {seed}}}")).unwrap();
    std::fs::write(dir.join("tokenizer/vocab.txt"), "a\nb\nc\n").unwrap();
}

struct Signed {
    _dir: tempfile::TempDir,
    model: PathBuf,
    bundle: PathBuf,
    public_key: PathBuf,
    digest: String,
}

fn signed_model(name: &str, size: usize, seed: u8) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_model(&model, size, seed);
    let key = PrivateKey::from_scalar_bytes(&[7u8; 32]).unwrap();
    let private = dir.path().join("key.pem");
    std::fs::write(&private, key.to_pkcs8_pem().unwrap()).unwrap();
    let public_key = dir.path().join("key.pub.pem");
    std::fs::write(&public_key, key.public_key_pem().unwrap()).unwrap();
    let bundle = dir.path().join("model.sig");
    let signed = sign_to_file(&SignRequest {
        model_path: model.clone(),
        key: private,
        out: bundle.clone(),
        ignore_paths: Vec::new(),
        include_git_paths: false,
        allow_symlinks: false,
        model_name: Some(name.to_string()),
    })
    .unwrap();
    Signed { _dir: dir, model, bundle, public_key, digest: signed.model_digest }
}

fn args<'a>(signed: &'a Signed, model: &'a str, to: &'a Path, uri: &'a str) -> Vec<&'a str> {
    vec![
        "--key",
        signed.public_key.to_str().unwrap(),
        "--bundle",
        signed.bundle.to_str().unwrap(),
        "--model",
        model,
        "--expected-digest",
        &signed.digest,
        "--to",
        to.to_str().unwrap(),
        uri,
    ]
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn fetches_a_signed_model_from_s3_and_keeps_exactly_the_signed_bytes() {
    let signed = signed_model("fraud-detector", 3 * 1024 * 1024 + 17, 1);
    let bucket = bucket("fetch-ok");
    s3().put_dir(&bucket, "fraud/v7", &signed.model).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/fraud/v7");
    let mut arguments = args(&signed, "fraud-detector", to.path(), &uri);
    // 1 MiB parts: the 3 MiB file is read in four parallel ranges.
    arguments.splice(0..0, ["--format", "json", "--part-size-mib", "1"]);
    let outcome = fetch(&arguments, &s3().aws_env());
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
    let report: Value = serde_json::from_str(outcome.stdout.trim()).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["modelDigest"], signed.digest.as_str());
    assert_eq!(report["modelName"], "fraud-detector");
    assert_eq!(report["files"].as_array().unwrap().len(), 3);
    assert!(report["files"][0]["sha256"].as_str().unwrap().len() == 64, "per-file digests are reported");
    assert_eq!(files_in(to.path()), ["config.json", "tokenizer/vocab.txt", "weights.bin"]);
    for name in ["config.json", "tokenizer/vocab.txt", "weights.bin"] {
        assert_eq!(std::fs::read(to.path().join(name)).unwrap(), std::fs::read(signed.model.join(name)).unwrap());
    }
    assert!(outcome.stderr.contains("\"event\":\"verified\""), "JSON progress on stderr: {}", outcome.stderr);
}

#[test]
fn an_object_replaced_after_signing_is_refused_naming_the_file_and_both_digests() {
    let signed = signed_model("fraud-detector", 2 * 1024 * 1024, 2);
    let bucket = bucket("fetch-changed");
    s3().put_dir(&bucket, "m", &signed.model).unwrap();
    s3().put_object(&bucket, "m/config.json", b"{\"seed\": 666}".to_vec()).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/m");
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 1, "{}{}", outcome.stdout, outcome.stderr);
    let signed_hex = rampart_checks::signing::to_hex(
        &rampart_checks::signing::hash_file(&signed.model.join("config.json")).unwrap(),
    );
    assert!(outcome.stderr.contains("NOT VERIFIED"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains(&format!("file config.json changed (signed sha256:{signed_hex}, now sha256:")));
    assert!(files_in(to.path()).is_empty(), "nothing of a refused model is kept: {:?}", files_in(to.path()));
}

#[test]
fn another_model_under_a_copied_trusted_bundle_is_refused() {
    // The reuse attack: a bundle and digest the victim signed, and other files at the URI.
    let victim = signed_model("fraud-detector", 64 * 1024, 3);
    let other = tempfile::tempdir().unwrap();
    write_model(other.path(), 64 * 1024, 99);
    let bucket = bucket("fetch-reuse");
    s3().put_dir(&bucket, "evil", other.path()).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/evil");
    let outcome = fetch(&args(&victim, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 1, "{}{}", outcome.stdout, outcome.stderr);
    assert!(outcome.stderr.contains("changed (signed sha256:"), "{}", outcome.stderr);
    assert!(files_in(to.path()).is_empty());
}

#[test]
fn extra_and_missing_objects_are_refused_before_anything_is_downloaded() {
    let signed = signed_model("fraud-detector", 1024, 4);
    let bucket = bucket("fetch-extra");
    s3().put_dir(&bucket, "m", &signed.model).unwrap();
    s3().put_object(&bucket, "m/backdoor.py", b"import os".to_vec()).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/m");
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("file(s) added since signing: backdoor.py"), "{}", outcome.stderr);

    s3().delete_object(&bucket, "m/backdoor.py").unwrap();
    s3().delete_object(&bucket, "m/tokenizer/vocab.txt").unwrap();
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("file(s) removed since signing: tokenizer/vocab.txt"), "{}", outcome.stderr);
    assert!(files_in(to.path()).is_empty());
}

#[test]
fn a_bundle_signed_for_another_model_is_refused() {
    let signed = signed_model("churn-model", 1024, 5);
    let bucket = bucket("fetch-name");
    s3().put_dir(&bucket, "m", &signed.model).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/m");
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(r#"the bundle signs model "churn-model", but this is model "fraud-detector""#),
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_single_file_model_is_fetched_under_its_object_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.onnx");
    std::fs::write(&file, vec![42u8; 5000]).unwrap();
    let signed = {
        let key = PrivateKey::from_scalar_bytes(&[9u8; 32]).unwrap();
        let private = dir.path().join("k.pem");
        std::fs::write(&private, key.to_pkcs8_pem().unwrap()).unwrap();
        let public_key = dir.path().join("k.pub.pem");
        std::fs::write(&public_key, key.public_key_pem().unwrap()).unwrap();
        let bundle = dir.path().join("model.sig");
        let out = sign_to_file(&SignRequest {
            model_path: file.clone(),
            key: private,
            out: bundle.clone(),
            ignore_paths: Vec::new(),
            include_git_paths: false,
            allow_symlinks: false,
            model_name: Some("fraud-detector".into()),
        })
        .unwrap();
        Signed { _dir: tempfile::tempdir().unwrap(), model: file.clone(), bundle, public_key, digest: out.model_digest }
    };
    let bucket = bucket("fetch-single");
    s3().put_file(&bucket, "fraud/v7/model.onnx", &file).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/fraud/v7/model.onnx");
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &s3().aws_env());
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(files_in(to.path()), ["model.onnx"]);
}

#[test]
fn plain_http_endpoints_need_an_explicit_opt_in() {
    let signed = signed_model("fraud-detector", 1024, 6);
    let bucket = bucket("fetch-http");
    s3().put_dir(&bucket, "m", &signed.model).unwrap();
    let to = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/m");
    let env: Vec<(String, String)> = s3().aws_env().into_iter().filter(|(k, _)| k != "AWS_ALLOW_HTTP").collect();
    let outcome = fetch(&args(&signed, "fraud-detector", to.path(), &uri), &env);
    assert_eq!(outcome.code, 2, "nothing was decided: {}", outcome.stderr);
    assert!(files_in(to.path()).is_empty());
}

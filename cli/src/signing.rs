//! `rampart sign`, `rampart verify` and `rampart register`: OpenSSF model-signing bundles made and checked with
//! `rampart_checks::signing`, and a verified version recorded in the registry.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_checks::contract::load_model;
use rampart_checks::signing::{
    HashingOptions, MAX_BUNDLE_BYTES, PrivateKey, SignatureError, TrustedKey, Verified, VerifyOptions, sign_model,
    verify_model,
};
use rampart_registry::{NewVersion, Verification};

use crate::args::{GlobalArgs, RegisterArgs, SignArgs, SignatureInputs, TextOrJson, VerifyArgs};
use crate::database::Database;
use crate::error::CliError;

/// Signs the model and writes the bundle.
pub fn sign(args: &SignArgs) -> Result<ExitCode, CliError> {
    let key = PrivateKey::from_pem_file(&args.key).map_err(|err| signature_error(err, "read the private key"))?;
    let out = args.out.clone().unwrap_or_else(|| default_bundle_path(&args.model_path));
    let mut ignore_paths = args.ignore_paths.clone();
    if let Some(inside) = relative_inside(&args.model_path, &out) {
        ignore_paths.push(inside);
    }
    let options = HashingOptions { ignore_paths, ignore_git_paths: !args.include_git_paths, allow_symlinks: false };
    let signed = sign_model(&args.model_path, &key, &options).map_err(|err| signature_error(err, "sign the model"))?;
    std::fs::write(&out, signed.bundle_json.as_bytes()).map_err(|err| {
        CliError::input(
            format!("cannot write the bundle to {}: {err}", out.display()),
            Some("pass a writable --out".into()),
        )
    })?;
    println!("signed {} ({} file(s)) with key {}", args.model_path.display(), signed.files, signed.key_id);
    println!("model digest: {}", signed.model_digest);
    println!("bundle:       {}", out.display());
    println!(
        "next: put the digest in spec.candidate.artifact.digest and the bundle in a Secret, e.g.\n  kubectl create secret generic NAME-signature --from-file=model.sig={}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Verifies the model; prints who signed it.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let result = verify_inputs(&args.model_path, &args.signature);
    match (args.format, result) {
        (TextOrJson::Json, Ok(verified)) => {
            print_json(&serde_json::json!({
                "verified": true,
                "keyId": verified.key_id,
                "keyLabel": verified.key_label,
                "modelDigest": verified.model_digest,
                "modelName": verified.model_name,
                "files": verified.files,
            }));
            Ok(ExitCode::SUCCESS)
        }
        (TextOrJson::Text, Ok(verified)) => {
            println!(
                "verified {} ({} file(s)): signed by key {} ({})\nmodel digest: {}",
                args.model_path.display(),
                verified.files,
                verified.key_id,
                verified.key_label,
                verified.model_digest
            );
            Ok(ExitCode::SUCCESS)
        }
        (TextOrJson::Json, Err(err)) if err.exit_code() == 1 => {
            print_json(&serde_json::json!({"verified": false, "reason": err.to_string()}));
            Ok(ExitCode::from(1))
        }
        (_, Err(err)) => Err(err),
    }
}

/// Verifies, then registers the version and records the verification.
pub async fn register(args: &RegisterArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    let verified = verify_inputs(&args.path, &args.signature)?;
    let bundle = std::fs::read_to_string(&args.signature.bundle).map_err(|err| {
        CliError::input(format!("cannot read bundle {}: {err}", args.signature.bundle.display()), None)
    })?;
    // A single model file also gives the tensor contract, which `rampart validate --baseline-from-registry` uses.
    let (format, tensor_contract) = match load_model(&args.path) {
        Ok(model) => (Some(model.contract.format.to_string()), serde_json::to_value(&model.contract).ok()),
        Err(_) => (None, None),
    };
    let database = Database::connect_for_writing(global).await?;
    let new = NewVersion {
        model: args.model.clone(),
        version: args.model_version.clone(),
        uri: args.uri.clone(),
        digest: verified.model_digest.clone(),
        size_bytes: model_size(&args.path),
        format,
        tensor_contract,
        signature_bundle: Some(bundle.clone()),
    };
    let registry = &database.registry;
    registry.register_version(&new).await.map_err(|err| database.error(err))?;
    let verification = Verification {
        digest: verified.model_digest.clone(),
        signer_key_id: verified.key_id.clone(),
        signature_bundle: Some(bundle),
    };
    let record = registry
        .mark_verified(&args.model, &args.model_version, &verification)
        .await
        .map_err(|err| database.error(err))?;
    println!(
        "registered {} {} ({}), verified: signed by key {} ({})",
        record.model, record.version, record.digest, verified.key_id, verified.key_label
    );
    println!("uri: {}", record.uri);
    Ok(ExitCode::SUCCESS)
}

fn verify_inputs(model_path: &Path, inputs: &SignatureInputs) -> Result<Verified, CliError> {
    let trusted = inputs
        .keys
        .iter()
        .map(|path| TrustedKey::from_pem_file(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| signature_error(err, "read a trusted key"))?;
    let bundle = read_bundle(&inputs.bundle)?;
    let mut extra_ignore_paths = Vec::new();
    if let Some(inside) = inside_model(model_path, &inputs.bundle) {
        extra_ignore_paths.push(inside);
    }
    let options =
        VerifyOptions { expected_digest: inputs.expected_digest.clone(), extra_ignore_paths, include_git_paths: false };
    verify_model(model_path, &bundle, &trusted, &options).map_err(|err| signature_error(err, "verify the model"))
}

/// Verification failures exit 1 with what they mean; unreadable files exit 2.
fn signature_error(err: SignatureError, doing: &str) -> CliError {
    if err.is_verification_failure() {
        CliError::failed(
            format!("NOT VERIFIED: {err}"),
            Some("re-sign the model with a trusted key (rampart sign), or trust the signer's key with --key".into()),
        )
    } else {
        CliError::input(format!("cannot {doing}: {err}"), None)
    }
}

/// Reads at most [`MAX_BUNDLE_BYTES`] (+1 so a larger file is noticed and refused by the parser).
fn read_bundle(path: &Path) -> Result<Vec<u8>, CliError> {
    let file = std::fs::File::open(path)
        .map_err(|err| CliError::input(format!("cannot read bundle {}: {err}", path.display()), None))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_BUNDLE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|err| CliError::input(format!("cannot read bundle {}: {err}", path.display()), None))?;
    Ok(bytes)
}

fn default_bundle_path(model_path: &Path) -> PathBuf {
    let trimmed = model_path.components().as_path();
    let mut name = trimmed.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The bundle path relative to the model directory when it is written inside it (it is then not part of the model).
fn relative_inside(model_path: &Path, out: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model_path).ok()?;
    if !root.is_dir() {
        return None;
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let out_abs = std::fs::canonicalize(parent).ok()?.join(out.file_name()?);
    relative_parts(&root, &out_abs)
}

fn inside_model(model_path: &Path, bundle: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model_path).ok()?;
    if !root.is_dir() {
        return None;
    }
    relative_parts(&root, &std::fs::canonicalize(bundle).ok()?)
}

fn relative_parts(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn model_size(path: &Path) -> Option<i64> {
    fn walk(path: &Path) -> std::io::Result<u64> {
        let metadata = std::fs::symlink_metadata(path)?;
        if metadata.is_dir() {
            let mut total = 0;
            for entry in std::fs::read_dir(path)? {
                total += walk(&entry?.path())?;
            }
            Ok(total)
        } else {
            Ok(metadata.len())
        }
    }
    walk(path).ok().and_then(|size| i64::try_from(size).ok())
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

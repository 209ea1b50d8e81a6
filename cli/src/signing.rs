//! `rampart sign`, `rampart verify` and `rampart register`: OpenSSF model-signing bundles made and checked with
//! `rampart_checks::signing`, and a verified version recorded in the registry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_checks::contract::load_model;
use rampart_checks::signing::{
    SignRequest, SignatureError, Verified, VerifyRequest, describe_verified, sign_to_file, verification_report,
    verify_files,
};
use rampart_registry::{NewVersion, Verification};

use crate::args::{GlobalArgs, RegisterArgs, SignArgs, SignatureInputs, TextOrJson, VerifyArgs};
use crate::database::Database;
use crate::error::CliError;

/// Signs the model and writes the bundle.
pub fn sign(args: &SignArgs) -> Result<ExitCode, CliError> {
    let out = args.out.clone().unwrap_or_else(|| default_bundle_path(&args.model_path));
    let request = SignRequest {
        model_path: args.model_path.clone(),
        key: args.key.clone(),
        out: out.clone(),
        ignore_paths: args.ignore_paths.clone(),
        include_git_paths: args.include_git_paths,
        allow_symlinks: false,
        model_name: args.model_name.clone(),
    };
    let signed = sign_to_file(&request).map_err(|err| signature_error(err, "sign the model"))?;
    println!(
        "signed {} ({} file(s)) as model {:?} with key {}",
        args.model_path.display(),
        signed.files,
        signed.model_name,
        signed.key_id
    );
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
    let result = verify_files(&args.model_path, &request(&args.signature));
    let code = match &result {
        Ok(_) => 0,
        Err(err) => err.exit_code(),
    };
    match (args.format, result) {
        (TextOrJson::Json, result) if code < 2 => {
            print_json(&verification_report(&result));
            Ok(ExitCode::from(code))
        }
        (TextOrJson::Text, Ok(verified)) => {
            println!("{}", describe_verified(&args.model_path, &verified));
            Ok(ExitCode::SUCCESS)
        }
        (_, Err(err)) => Err(signature_error(err, "verify the model")),
        (TextOrJson::Json, Ok(_)) => Ok(ExitCode::SUCCESS),
    }
}

/// Verifies, then registers the version and records the verification.
pub async fn register(args: &RegisterArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    // The bundle must vouch for this model name: a signature for another model cannot be registered under it.
    let mut inputs = args.signature.clone();
    inputs.model_name = Some(args.model.clone());
    let verified = verify_inputs(&args.path, &inputs)?;
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
        ..Default::default()
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

fn request(inputs: &SignatureInputs) -> VerifyRequest {
    VerifyRequest {
        keys: inputs.keys.clone(),
        bundle: inputs.bundle.clone(),
        expected_digest: inputs.expected_digest.clone(),
        expected_model_name: inputs.model_name.clone(),
        ..VerifyRequest::default()
    }
}

fn verify_inputs(model_path: &Path, inputs: &SignatureInputs) -> Result<Verified, CliError> {
    verify_files(model_path, &request(inputs)).map_err(|err| signature_error(err, "verify the model"))
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

fn default_bundle_path(model_path: &Path) -> PathBuf {
    let trimmed = model_path.components().as_path();
    let mut name = trimmed.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
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

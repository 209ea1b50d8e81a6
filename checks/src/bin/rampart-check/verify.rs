//! `rampart-check verify`: checks a model against an OpenSSF model-signing bundle and a set of trusted public keys.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::signing::{MAX_BUNDLE_BYTES, SignatureError, TrustedKey, Verified, VerifyOptions, verify_model};

/// Arguments of `rampart-check verify`.
#[derive(clap::Args)]
pub struct Args {
    /// A trusted PEM public key (ECDSA P-256); repeat for several. The report names the one that signed.
    #[arg(long = "key", value_name = "PUBLIC.pem", required = true)]
    keys: Vec<PathBuf>,
    /// The signature bundle (JSON), from `rampart-check sign` or the reference `model_signing` tool.
    #[arg(long, value_name = "BUNDLE")]
    bundle: PathBuf,
    /// The digest the rollout names (`sha256:<hex>`); verification fails when the bundle signs another model.
    #[arg(long, value_name = "sha256:HEX")]
    expected_digest: Option<String>,
    /// A path, relative to the model directory, to leave out in addition to those the bundle lists (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<String>,
    /// Do not leave out git metadata unless the bundle lists it.
    #[arg(long)]
    include_git_paths: bool,
    /// Print one JSON object on stdout (`verified`, `key_id`, `key_label`, `model_digest`, `files`, or `reason` and
    /// `label` when not verified), for the controller's check Job.
    #[arg(long)]
    json: bool,
    /// The model: one file or a directory.
    #[arg(value_name = "MODEL_PATH")]
    model_path: PathBuf,
}

/// Exit 0 verified, 1 not verified (the reason is printed), 2 usage or I/O error.
pub fn run(args: Args) -> ExitCode {
    let result = verify(&args);
    let code = match &result {
        Ok(_) => 0,
        Err(err) if err.is_verification_failure() => 1,
        Err(_) => 2,
    };
    match (&result, args.json) {
        (Ok(verified), true) => println!(
            "{}",
            serde_json::json!({
                "verified": true,
                "key_id": verified.key_id,
                "key_label": verified.key_label,
                "model_digest": verified.model_digest,
                "model_name": verified.model_name,
                "files": verified.files,
            })
        ),
        (Err(err), true) => println!(
            "{}",
            serde_json::json!({"verified": false, "reason": err.to_string(), "label": err.metric_label()})
        ),
        (Ok(verified), false) => println!(
            "verified {} ({} file(s)): signed by key {} ({})\nmodel digest: {}",
            args.model_path.display(),
            verified.files,
            verified.key_id,
            verified.key_label,
            verified.model_digest
        ),
        (Err(err), false) if code == 1 => eprintln!("rampart-check verify: NOT VERIFIED: {err}"),
        (Err(err), false) => eprintln!("rampart-check verify: {err}"),
    }
    ExitCode::from(code)
}

fn verify(args: &Args) -> Result<Verified, SignatureError> {
    let trusted = args.keys.iter().map(|path| TrustedKey::from_pem_file(path)).collect::<Result<Vec<_>, _>>()?;
    let bundle = read_bundle(&args.bundle)?;
    let mut extra_ignore_paths = args.ignore_paths.clone();
    if let Some(inside) = bundle_inside_model(args) {
        extra_ignore_paths.push(inside);
    }
    let options = VerifyOptions {
        expected_digest: args.expected_digest.clone(),
        extra_ignore_paths,
        include_git_paths: args.include_git_paths,
    };
    verify_model(&args.model_path, &bundle, &trusted, &options)
}

/// Reads at most [`MAX_BUNDLE_BYTES`] (+1 to notice a larger file) so a huge file cannot exhaust memory.
fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, SignatureError> {
    let file = std::fs::File::open(path).map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_BUNDLE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
    Ok(bytes)
}

/// A bundle stored inside the model directory is not part of the model.
fn bundle_inside_model(args: &Args) -> Option<String> {
    let root = std::fs::canonicalize(&args.model_path).ok()?;
    let bundle = std::fs::canonicalize(&args.bundle).ok()?;
    if !root.is_dir() {
        return None;
    }
    let relative = bundle.strip_prefix(&root).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

//! `rampart-check verify`: checks a model on disk against an OpenSSF model-signing bundle and a set of trusted public
//! keys, with the library's one verification implementation (shared with `rampart verify`).

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::signing::{VerifyRequest, describe_verified, verification_report, verify_files};

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
    /// The model name the signed statement must name (a rollout's `spec.model`); a bundle for another model fails.
    #[arg(long = "model", value_name = "NAME")]
    model: Option<String>,
    /// A path, relative to the model directory, to leave out in addition to those the bundle lists (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<String>,
    /// Do not leave out git metadata unless the bundle lists it.
    #[arg(long)]
    include_git_paths: bool,
    /// Print one JSON object on stdout (`verified`, `keyId`, `keyLabel`, `modelDigest`, `modelName`, `files`, or
    /// `reason` and `label` when not verified).
    #[arg(long)]
    json: bool,
    /// The model: one file or a directory.
    #[arg(value_name = "MODEL_PATH")]
    model_path: PathBuf,
}

/// Exit 0 verified, 1 not verified (the reason is printed), 2 usage or I/O error.
pub fn run(args: Args) -> ExitCode {
    let request = VerifyRequest {
        keys: args.keys,
        bundle: args.bundle,
        expected_digest: args.expected_digest,
        expected_model_name: args.model,
        ignore_paths: args.ignore_paths,
        include_git_paths: args.include_git_paths,
    };
    let result = verify_files(&args.model_path, &request);
    let code = match &result {
        Ok(_) => 0,
        Err(err) => err.exit_code(),
    };
    match (&result, args.json) {
        (_, true) => println!("{}", verification_report(&result)),
        (Ok(verified), false) => println!("{}", describe_verified(&args.model_path, verified)),
        (Err(err), false) if code == 1 => eprintln!("rampart-check verify: NOT VERIFIED: {err}"),
        (Err(err), false) => eprintln!("rampart-check verify: {err}"),
    }
    ExitCode::from(code)
}

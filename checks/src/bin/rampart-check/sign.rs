//! `rampart-check sign`: signs a model file or directory into an OpenSSF model-signing bundle (ECDSA P-256 key), with
//! the library's one signing implementation (`rampart_checks::signing::sign_to_file`, shared with `rampart sign`).

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::signing::{SignRequest, sign_to_file};

/// Arguments of `rampart-check sign`.
#[derive(clap::Args)]
pub struct Args {
    /// PEM private key (ECDSA P-256, PKCS#8 or SEC1, unencrypted).
    #[arg(long, value_name = "PRIVATE.pem")]
    key: PathBuf,
    /// Where to write the bundle (JSON). When it lies inside the model directory it is left out of the manifest.
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
    /// The model name the signature vouches for (the registry name a rollout's `spec.model` gives); default: the
    /// file or directory name.
    #[arg(long = "model-name", value_name = "NAME")]
    model_name: Option<String>,
    /// A path, relative to the model directory, to leave out of the signature (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<String>,
    /// Sign git metadata (.git, .gitattributes, .github, .gitignore) too; left out by default.
    #[arg(long)]
    include_git_paths: bool,
    /// Follow symbolic links to files (refused by default).
    #[arg(long)]
    allow_symlinks: bool,
    /// The model: one file or a directory.
    #[arg(value_name = "MODEL_PATH")]
    model_path: PathBuf,
}

/// Signs, writes the bundle, prints the model digest. Exit 0 on success, 2 on a usage or I/O error.
pub fn run(args: Args) -> ExitCode {
    let request = SignRequest {
        model_path: args.model_path.clone(),
        key: args.key,
        out: args.out.clone(),
        ignore_paths: args.ignore_paths,
        include_git_paths: args.include_git_paths,
        allow_symlinks: args.allow_symlinks,
        model_name: args.model_name,
    };
    match sign_to_file(&request) {
        Ok(signed) => {
            println!(
                "signed {} ({} file(s)) as model {:?} with key {}\nmodel digest: {}\nbundle: {}",
                args.model_path.display(),
                signed.files,
                signed.model_name,
                signed.key_id,
                signed.model_digest,
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rampart-check sign: {err}");
            ExitCode::from(2)
        }
    }
}

//! `rampart-check sign`: signs a model file or directory into an OpenSSF model-signing bundle (ECDSA P-256 key).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_checks::signing::{HashingOptions, PrivateKey, SignatureError, sign_model};

/// Arguments of `rampart-check sign`.
#[derive(clap::Args)]
pub struct Args {
    /// PEM private key (ECDSA P-256, PKCS#8 or SEC1, unencrypted).
    #[arg(long, value_name = "PRIVATE.pem")]
    key: PathBuf,
    /// Where to write the bundle (JSON). When it lies inside the model directory it is left out of the manifest.
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
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
    match sign(&args) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rampart-check sign: {err}");
            ExitCode::from(2)
        }
    }
}

fn sign(args: &Args) -> Result<String, SignatureError> {
    let key = PrivateKey::from_pem_file(&args.key)?;
    let mut ignore_paths = args.ignore_paths.clone();
    if let Some(inside) = relative_inside(&args.model_path, &args.out) {
        ignore_paths.push(inside);
    }
    let options =
        HashingOptions { ignore_paths, ignore_git_paths: !args.include_git_paths, allow_symlinks: args.allow_symlinks };
    let signed = sign_model(&args.model_path, &key, &options)?;
    std::fs::write(&args.out, signed.bundle_json.as_bytes())
        .map_err(|source| SignatureError::Write { path: args.out.clone(), source })?;
    Ok(format!(
        "signed {} ({} file(s)) with key {}\nmodel digest: {}\nbundle: {}",
        args.model_path.display(),
        signed.files,
        signed.key_id,
        signed.model_digest,
        args.out.display()
    ))
}

/// The bundle path relative to the model directory, when the bundle is written inside it.
fn relative_inside(model_path: &Path, out: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model_path).ok()?;
    if !root.is_dir() {
        return None;
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let out_abs = std::fs::canonicalize(parent).ok()?.join(out.file_name()?);
    let relative = out_abs.strip_prefix(&root).ok()?;
    let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

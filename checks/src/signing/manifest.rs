//! The model manifest: every file of a model (a single file or a directory) paired with its sha256, in the canonical
//! order of the model-signing format, and the model digest that sums them up.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SignatureError;

/// Paths the reference tool leaves out of a directory model by default (git metadata).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// How a model is turned into a manifest. Signing and verification must agree; verification takes these from the
/// bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashingOptions {
    /// Paths relative to the model root (`/`-separated) to leave out; a directory leaves out everything below it.
    pub ignore_paths: Vec<String>,
    /// Also leave out [`GIT_PATHS`].
    pub ignore_git_paths: bool,
    /// Follow symbolic links to files (links to directories are skipped, as the reference tool does). When false a
    /// symbolic link anywhere in the model is an error.
    pub allow_symlinks: bool,
}

impl Default for HashingOptions {
    fn default() -> Self {
        Self { ignore_paths: Vec::new(), ignore_git_paths: true, allow_symlinks: false }
    }
}

impl HashingOptions {
    /// The ignore paths as they are recorded in a bundle: git paths (when enabled) then the caller's, normalised,
    /// without duplicates.
    pub fn recorded_ignore_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        let git = if self.ignore_git_paths { GIT_PATHS.as_slice() } else { &[] };
        for path in git.iter().copied().chain(self.ignore_paths.iter().map(String::as_str)) {
            if let Some(components) = normalise_relative(path) {
                let joined = components.join("/");
                if !joined.is_empty() && !paths.contains(&joined) {
                    paths.push(joined);
                }
            }
        }
        paths
    }
}

/// One file of a model and its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Path relative to the model root, `/`-separated; `.` when the model is a single file.
    pub name: String,
    pub sha256: [u8; 32],
}

/// The files of a model in canonical order (path components compared one by one, as the reference tool sorts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelManifest {
    /// Last component of the model path; informative only, it is not covered by the digest.
    pub model_name: String,
    pub files: Vec<FileDigest>,
}

impl ModelManifest {
    /// The model digest: sha256 over the concatenated 32-byte file digests, in manifest order. This is the in-toto
    /// subject digest of a model-signing bundle.
    pub fn model_digest(&self) -> [u8; 32] {
        digest_of_digests(self.files.iter().map(|file| &file.sha256))
    }

    /// [`ModelManifest::model_digest`] as `sha256:<hex>`, the form used in `spec.candidate.artifact.digest`.
    pub fn model_digest_string(&self) -> String {
        format!("sha256:{}", to_hex(&self.model_digest()))
    }
}

/// sha256 over the concatenation of the given digests.
pub fn digest_of_digests<'a>(digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(digest);
    }
    hasher.finalize().into()
}

/// The model digest (`sha256:<hex>`) of a model file or directory with default options.
pub fn model_digest(model_path: &Path) -> Result<String, SignatureError> {
    Ok(hash_model(model_path, &HashingOptions::default())?.model_digest_string())
}

/// Hashes every file of the model at `model_path` (streaming, 1 MiB at a time, so file size does not matter).
pub fn hash_model(model_path: &Path, options: &HashingOptions) -> Result<ModelManifest, SignatureError> {
    let metadata = std::fs::symlink_metadata(model_path)
        .map_err(|source| SignatureError::Io { path: model_path.to_path_buf(), source })?;
    let model_name = model_name(model_path);
    let metadata = if metadata.file_type().is_symlink() {
        if !options.allow_symlinks {
            return Err(SignatureError::Symlink { path: model_path.to_path_buf() });
        }
        std::fs::metadata(model_path).map_err(|source| SignatureError::Io { path: model_path.to_path_buf(), source })?
    } else {
        metadata
    };
    if metadata.is_file() {
        let sha256 = hash_file(model_path)?;
        return Ok(ModelManifest { model_name, files: vec![FileDigest { name: ".".into(), sha256 }] });
    }
    if !metadata.is_dir() {
        return Err(SignatureError::SpecialFile { path: model_path.to_path_buf() });
    }
    let ignored: Vec<Vec<String>> =
        options.recorded_ignore_paths().iter().filter_map(|path| normalise_relative(path)).collect();
    let mut found: Vec<(Vec<String>, PathBuf)> = Vec::new();
    collect_files(model_path, &mut Vec::new(), &ignored, options.allow_symlinks, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut files = Vec::with_capacity(found.len());
    for (components, path) in found {
        files.push(FileDigest { name: components.join("/"), sha256: hash_file(&path)? });
    }
    Ok(ModelManifest { model_name, files })
}

fn model_name(model_path: &Path) -> String {
    let named = model_path.file_name().map(|name| name.to_string_lossy().into_owned());
    match named {
        Some(name) if !name.is_empty() && name != ".." => name,
        _ => std::fs::canonicalize(model_path)
            .ok()
            .and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into()),
    }
}

fn collect_files(
    dir: &Path,
    prefix: &mut Vec<String>,
    ignored: &[Vec<String>],
    allow_symlinks: bool,
    found: &mut Vec<(Vec<String>, PathBuf)>,
) -> Result<(), SignatureError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SignatureError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| SignatureError::Io { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(SignatureError::NonUtf8Name { path });
        };
        prefix.push(name);
        let skip = ignored.iter().any(|ignore| prefix.starts_with(ignore));
        if !skip {
            visit(&path, prefix, ignored, allow_symlinks, found)?;
        }
        prefix.pop();
    }
    Ok(())
}

fn visit(
    path: &Path,
    prefix: &mut Vec<String>,
    ignored: &[Vec<String>],
    allow_symlinks: bool,
    found: &mut Vec<(Vec<String>, PathBuf)>,
) -> Result<(), SignatureError> {
    let file_type = std::fs::symlink_metadata(path)
        .map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?
        .file_type();
    if file_type.is_symlink() {
        if !allow_symlinks {
            return Err(SignatureError::Symlink { path: path.to_path_buf() });
        }
        // Follow links to files; links to directories are not descended into (as the reference tool).
        let target =
            std::fs::metadata(path).map_err(|source| SignatureError::Io { path: path.to_path_buf(), source })?;
        if target.is_file() {
            found.push((prefix.clone(), path.to_path_buf()));
        } else if !target.is_dir() {
            return Err(SignatureError::SpecialFile { path: path.to_path_buf() });
        }
        return Ok(());
    }
    if file_type.is_file() {
        found.push((prefix.clone(), path.to_path_buf()));
        Ok(())
    } else if file_type.is_dir() {
        collect_files(path, prefix, ignored, allow_symlinks, found)
    } else {
        Err(SignatureError::SpecialFile { path: path.to_path_buf() })
    }
}

/// Streams one file through sha256.
pub fn hash_file(path: &Path) -> Result<[u8; 32], SignatureError> {
    let io_error = |source| SignatureError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error(err)),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

/// Splits a relative `/`-separated path into components, dropping `.` and empty parts. `None` for paths that are
/// absolute or climb out of the model (`..`): those can never name a file of the model.
pub fn normalise_relative(path: &str) -> Option<Vec<String>> {
    if path.starts_with('/') {
        return None;
    }
    let mut components = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            other => components.push(other.to_string()),
        }
    }
    Some(components)
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses exactly 64 hex digits (either case) into a sha256 digest.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// Parses a model digest as written in a rollout: `sha256:<64 hex>` (a bare 64-hex value is accepted too).
pub fn parse_model_digest(text: &str) -> Result<[u8; 32], SignatureError> {
    let trimmed = text.trim();
    let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    parse_sha256_hex(hex).ok_or_else(|| SignatureError::BadDigest { value: text.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn orders_files_by_path_components_like_the_reference_tool() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.b", "a-c", "A"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/b"), "ab").unwrap();
        let manifest = hash_model(dir.path(), &HashingOptions::default()).unwrap();
        let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["A", "a/b", "a-c", "a.b"]);
    }

    #[test]
    fn leaves_out_git_metadata_and_ignored_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
        std::fs::write(dir.path().join(".git/objects/x"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache/y"), "y").unwrap();
        std::fs::write(dir.path().join("weights.bin"), "w").unwrap();
        let options = HashingOptions { ignore_paths: vec!["./cache/".into()], ..HashingOptions::default() };
        let manifest = hash_model(dir.path(), &options).unwrap();
        let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["weights.bin"]);
    }

    #[test]
    fn single_file_model_is_named_dot_and_digest_covers_file_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("single.bin");
        std::fs::write(&path, "single\n").unwrap();
        let manifest = hash_model(&path, &HashingOptions::default()).unwrap();
        assert_eq!(manifest.files[0].name, ".");
        // Values computed with the reference tool for the same content.
        assert_eq!(
            to_hex(&manifest.files[0].sha256),
            "f9ea4b8413f7b84383d16b6fdf36872439f9d7223623480c0eebfba0e5291ded"
        );
        assert_eq!(
            manifest.model_digest_string(),
            "sha256:eaf11f7282215d586d58b1bf1a2bec2bd31e93f3874d37f716288c1407e9167d"
        );
    }

    #[test]
    fn parses_digests_with_and_without_prefix_and_rejects_garbage() {
        let hex = "ab".repeat(32);
        assert!(parse_model_digest(&format!("sha256:{hex}")).is_ok());
        assert!(parse_model_digest(&hex).is_ok());
        assert!(parse_model_digest("sha256:xyz").is_err());
        assert!(parse_model_digest("sha256:é").is_err());
    }
}

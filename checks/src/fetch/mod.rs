//! `fetch`: download a signed model from object storage (or a path) into a local directory, keeping only the bytes the
//! signature vouches for. The bundle is authenticated first (trusted key, expected digest, model name); then every file
//! the signed manifest lists is streamed, hashed and written to a partial file that is moved into place only when its
//! sha256 equals the signed one. Files the store holds beyond the manifest, files missing from it and changed files
//! are refused by name (changed ones with both digests). Memory stays bounded whatever the model's size: large files
//! are read in parallel ranges written straight to disk at their offsets and hashed in order from there; see
//! `docs/artifacts.md`.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectMeta};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use crate::artifact::single_file_name;
use crate::signing::{
    ChangedFile, GIT_PATHS, SignatureError, Statement, TrustedKey, check_model_name, normalise_relative,
    parse_model_digest, to_hex, verify_bundle,
};
pub use source::{Source, open};

/// Files larger than this are read in parallel ranges of this size.
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Range requests in flight at once, over all files.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Directory inside the destination where files are written until their digest is checked.
pub const PARTIAL_DIR: &str = ".rampart-partial";

/// What to fetch and what it must be.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Keys the signature must come from.
    pub trusted: Vec<TrustedKey>,
    /// The bundle bytes.
    pub bundle: Vec<u8>,
    /// The model name the signed statement must name (a rollout's `spec.model`, or its explicit mapping).
    pub expected_model_name: String,
    /// The digest the rollout names, when it names one.
    pub expected_digest: Option<String>,
    /// Paths to leave out in addition to those the bundle lists (e.g. a bundle stored next to the model).
    pub extra_ignore_paths: Vec<String>,
    /// The directory the verified files go to (created when missing; must hold nothing but an earlier fetch's files).
    pub destination: PathBuf,
    /// Range size for large files.
    pub part_size: u64,
    /// Range requests in flight at once.
    pub concurrency: usize,
}

impl FetchOptions {
    /// Options with the default part size and concurrency.
    pub fn new(trusted: Vec<TrustedKey>, bundle: Vec<u8>, model_name: &str, destination: &Path) -> Self {
        Self {
            trusted,
            bundle,
            expected_model_name: model_name.to_string(),
            expected_digest: None,
            extra_ignore_paths: Vec::new(),
            destination: destination.to_path_buf(),
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// One fetched and verified file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchedFile {
    /// Path relative to the model root (`.` for a single-file model).
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its sha256 (hex), equal to the signed one.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The store's entity tag of the object read, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// The store's object version id, when versioning is on (pin serving to it where the runtime can).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The outcome of a successful fetch.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchReport {
    /// The URI fetched from.
    pub source: String,
    /// The statement's subject name.
    pub model_name: String,
    /// `sha256:<hex>` model digest that was signed.
    pub model_digest: String,
    /// Key id of the trusted key that signed.
    pub key_id: String,
    /// That key's label.
    pub key_label: String,
    /// The verified files, in manifest order.
    pub files: Vec<FetchedFile>,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the store was listed to look for extra files (not possible over plain `https://`).
    pub listed: bool,
    /// The local path to hand a model server: the destination for a directory model, the file for a single file.
    pub model_path: PathBuf,
}

/// Why a fetch did not produce a verified copy. [`FetchError::exit_code`]: 1 the model is not trusted, 2 nothing was
/// decided (bad arguments, unreachable store).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bundle, a key, the digest or the model name did not check out, or the files differ from the manifest.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The URI cannot be used.
    #[error("the artifact URI {uri} {reason}")]
    Source { uri: String, reason: String },
    /// The store failed while listing or reading.
    #[error("cannot read {location} from {uri}: {reason}")]
    Store { uri: String, location: String, reason: String },
    /// An object was replaced while it was being read (its ranges would mix two versions).
    #[error(
        "{name} changed in the store while it was being read; nothing of it was kept (fetch again once writes stop)"
    )]
    ChangedDuringRead { name: String },
    /// The destination cannot be written.
    #[error("cannot write {}: {reason}", path.display())]
    Destination { path: PathBuf, reason: String },
}

impl FetchError {
    /// The exit code of `rampart-check fetch`, like `verify`.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Signature(err) => err.exit_code(),
            Self::ChangedDuringRead { .. } => 1,
            Self::Source { .. } | Self::Store { .. } | Self::Destination { .. } => 2,
        }
    }

    /// A short, stable label for metrics and JSON reports.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Signature(err) => err.metric_label(),
            Self::Source { .. } => "source",
            Self::Store { .. } => "store",
            Self::ChangedDuringRead { .. } => "changed_during_read",
            Self::Destination { .. } => "destination",
        }
    }
}

/// Progress, for people (a line now and then) and machines (JSON lines).
#[derive(Debug, Clone)]
pub enum Progress {
    /// The bundle checked out; `files` files, `bytes` bytes to fetch.
    Started { files: usize, bytes: u64 },
    /// `bytes` more bytes arrived.
    Bytes(u64),
    /// A file matched its signed digest and was kept.
    FileVerified { name: String, size: u64 },
}

/// Fetches the model at `uri` into `options.destination`, keeping it only if it is exactly what was signed.
pub async fn fetch_verified(
    uri: &str,
    options: &FetchOptions,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<FetchReport, FetchError> {
    let result = fetch(uri, options, progress, Hashing::On).await;
    if result.is_err() {
        remove_fetched(uri, &options.destination, &options.bundle, &options.trusted);
    }
    result
}

/// The benchmark's baseline, NOT a verification: the same listing and the same parallel ranged reads into
/// `options.destination`, with no hashing, so the cost of verifying can be measured. The report's digests are empty.
#[doc(hidden)]
pub async fn download_without_verifying_for_benchmarks(
    uri: &str,
    options: &FetchOptions,
) -> Result<FetchReport, FetchError> {
    fetch(uri, options, Arc::new(|_| {}), Hashing::Off).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hashing {
    On,
    Off,
}

/// After a refused fetch, removes what it had already placed: the destination keeps no part of a rejected model.
fn remove_fetched(uri: &str, destination: &Path, bundle: &[u8], trusted: &[TrustedKey]) {
    let Ok((statement, _)) = verify_bundle(bundle, trusted) else { return };
    let _ = std::fs::remove_dir_all(destination.join(PARTIAL_DIR));
    for file in &statement.files {
        let name = if file.name == "." { single_file_name(uri) } else { file.name.clone() };
        let mut path = destination.to_path_buf();
        path.extend(name.split('/'));
        let _ = std::fs::remove_file(path);
    }
}

async fn fetch(
    uri: &str,
    options: &FetchOptions,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
    hashing: Hashing,
) -> Result<FetchReport, FetchError> {
    let started = Instant::now();
    let (statement, key) = verify_bundle(&options.bundle, &options.trusted)?;
    if let Some(expected) = &options.expected_digest {
        let expected_bytes = parse_model_digest(expected)?;
        if expected_bytes != statement.model_digest {
            return Err(SignatureError::DigestMismatch {
                expected: expected.clone(),
                signed: to_hex(&statement.model_digest),
            }
            .into());
        }
    }
    check_model_name(&statement, &options.expected_model_name)?;
    let key_id = key.key_id().to_string();
    let key_label = key.label.clone();

    let source = source::open(uri)?;
    let plan = plan(&source, &statement, options).await?;
    let destination = prepare_destination(&options.destination, &statement)?;
    progress(Progress::Started { files: plan.len(), bytes: plan.iter().map(|(_, meta)| meta.size).sum() });

    let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let bytes = Arc::new(AtomicU64::new(0));
    let signed: BTreeMap<&str, &[u8; 32]> = statement.files.iter().map(|f| (f.name.as_str(), &f.sha256)).collect();
    let single_name = single_file_name(uri);
    let jobs = plan.iter().enumerate().map(|(index, (name, meta))| {
        let source = &source;
        let semaphore = semaphore.clone();
        let bytes = bytes.clone();
        let progress = progress.clone();
        let destination = destination.clone();
        let expected = signed.get(name.as_str()).copied().copied();
        let local_name = if name == "." { single_name.clone() } else { name.clone() };
        async move {
            let partial = destination.join(PARTIAL_DIR).join(index.to_string());
            let read =
                download(source, name, meta, &partial, options, hashing, semaphore, bytes, progress.clone()).await;
            let (digest, e_tag, version) = match read {
                Ok(read) => read,
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(err);
                }
            };
            if let (Some(expected), Some(actual)) = (expected, digest)
                && actual != expected
            {
                let _ = std::fs::remove_file(&partial);
                return Err(FetchError::Signature(SignatureError::ModelMismatch {
                    changed: vec![ChangedFile {
                        name: name.clone(),
                        signed: to_hex(&expected),
                        actual: to_hex(&actual),
                    }],
                    added: Vec::new(),
                    missing: Vec::new(),
                }));
            }
            let path = place(&destination, &partial, &local_name)?;
            progress(Progress::FileVerified { name: name.clone(), size: meta.size });
            Ok(FetchedFile {
                name: name.clone(),
                path,
                sha256: digest.map(|d| to_hex(&d)).unwrap_or_default(),
                size: meta.size,
                e_tag,
                version,
            })
        }
    });
    // A few files at a time; the semaphore bounds the range requests over all of them.
    let mut files: Vec<FetchedFile> = futures::stream::iter(jobs).buffer_unordered(4).try_collect().await?;
    let _ = std::fs::remove_dir(destination.join(PARTIAL_DIR));
    let order: BTreeMap<&str, usize> = statement.files.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect();
    files.sort_by_key(|file| order.get(file.name.as_str()).copied().unwrap_or(usize::MAX));
    let model_path = if statement.files.len() == 1 && statement.files[0].name == "." {
        destination.join(&single_name)
    } else {
        destination.clone()
    };
    Ok(FetchReport {
        source: uri.to_string(),
        model_name: statement.model_name.clone(),
        model_digest: format!("sha256:{}", to_hex(&statement.model_digest)),
        key_id,
        key_label,
        files,
        bytes: bytes.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        listed: source.can_list,
        model_path,
    })
}

/// Matches the store's objects with the signed manifest: every signed file must be there, nothing else may be (outside
/// the ignored paths). Returns the files to read with their metadata, in manifest order.
async fn plan(
    source: &Source,
    statement: &Statement,
    options: &FetchOptions,
) -> Result<Vec<(String, ObjectMeta)>, FetchError> {
    let single = statement.files.len() == 1 && statement.files[0].name == ".";
    let store_error = |location: &ObjectPath, err: object_store::Error| FetchError::Store {
        uri: source.uri.clone(),
        location: location.to_string(),
        reason: err.to_string(),
    };
    if single {
        let meta = match source.store.head(&source.root).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Err(missing(vec![".".into()])),
            Err(err) => return Err(store_error(&source.root, err)),
        };
        return Ok(vec![(".".to_string(), meta)]);
    }
    let mut ignored: Vec<Vec<String>> =
        statement.serialization.ignore_paths.iter().filter_map(|path| normalise_relative(path)).collect();
    ignored.extend(GIT_PATHS.iter().filter_map(|path| normalise_relative(path)));
    ignored.extend(options.extra_ignore_paths.iter().filter_map(|path| normalise_relative(path)));
    let is_ignored = |name: &str| {
        let parts: Vec<String> = name.split('/').map(str::to_string).collect();
        ignored.iter().any(|prefix| !prefix.is_empty() && parts.starts_with(prefix))
    };
    let signed: BTreeSet<&str> = statement.files.iter().map(|f| f.name.as_str()).collect();
    let mut found: BTreeMap<String, ObjectMeta> = BTreeMap::new();
    if source.can_list {
        let mut listing = source.store.list(Some(&source.root));
        let mut added = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|err| store_error(&source.root, err))?;
            let Some(name) = source.relative_name(&meta.location) else { continue };
            if signed.contains(name.as_str()) {
                found.insert(name, meta);
            } else if !is_ignored(&name) {
                added.push(name);
            }
        }
        let missing_files: Vec<String> =
            signed.iter().filter(|name| !found.contains_key(**name)).map(|name| (*name).to_string()).collect();
        if !added.is_empty() || !missing_files.is_empty() {
            added.sort();
            return Err(FetchError::Signature(SignatureError::ModelMismatch {
                changed: Vec::new(),
                added,
                missing: missing_files,
            }));
        }
    } else {
        let mut missing_files = Vec::new();
        for name in &signed {
            let location = source.location(name);
            match source.store.head(&location).await {
                Ok(meta) => {
                    found.insert((*name).to_string(), meta);
                }
                Err(object_store::Error::NotFound { .. }) => missing_files.push((*name).to_string()),
                Err(err) => return Err(store_error(&location, err)),
            }
        }
        if !missing_files.is_empty() {
            return Err(missing(missing_files));
        }
    }
    Ok(statement
        .files
        .iter()
        .filter_map(|file| found.remove(&file.name).map(|meta| (file.name.clone(), meta)))
        .collect())
}

fn missing(names: Vec<String>) -> FetchError {
    FetchError::Signature(SignatureError::ModelMismatch { changed: Vec::new(), added: Vec::new(), missing: names })
}

/// Creates the destination, refusing one that holds anything but an earlier fetch of this model (an init container
/// that restarts fetches again into the same volume; a wrong `--to` must not mix a model with other files).
fn prepare_destination(destination: &Path, statement: &Statement) -> Result<PathBuf, FetchError> {
    let fail = |reason: String| FetchError::Destination { path: destination.to_path_buf(), reason };
    std::fs::create_dir_all(destination).map_err(|err| fail(err.to_string()))?;
    let destination = std::fs::canonicalize(destination).map_err(|err| fail(err.to_string()))?;
    let mut allowed: BTreeSet<String> =
        statement.files.iter().filter_map(|f| f.name.split('/').next().map(str::to_string)).collect();
    allowed.insert(PARTIAL_DIR.to_string());
    let single = statement.files.len() == 1 && statement.files[0].name == ".";
    let entries = std::fs::read_dir(&destination).map_err(|err| fail(err.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|err| fail(err.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !single && !allowed.contains(&name) {
            return Err(fail(format!(
                "it already holds {name}, which is not part of this model; fetch into an empty directory"
            )));
        }
    }
    let partial = destination.join(PARTIAL_DIR);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|err| fail(err.to_string()))?;
    Ok(destination)
}

/// Moves a checked partial file to its place in the destination.
fn place(destination: &Path, partial: &Path, name: &str) -> Result<PathBuf, FetchError> {
    let mut target = destination.to_path_buf();
    for part in name.split('/') {
        target.push(part);
    }
    let fail = |err: std::io::Error| FetchError::Destination { path: target.clone(), reason: err.to_string() };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::rename(partial, &target).map_err(fail)?;
    Ok(target)
}

/// Reads one object into `partial`, hashing it. Small objects are one streamed request; large ones are parallel range
/// requests, all pinned to the entity tag seen when listing (a replaced object fails instead of mixing versions).
/// Returns (sha256 when hashing, entity tag, version id).
#[allow(clippy::too_many_arguments)]
async fn download(
    source: &Source,
    name: &str,
    meta: &ObjectMeta,
    partial: &Path,
    options: &FetchOptions,
    hashing: Hashing,
    semaphore: Arc<Semaphore>,
    bytes: Arc<AtomicU64>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<(Option<[u8; 32]>, Option<String>, Option<String>), FetchError> {
    let location = source.location(name);
    let write_error =
        |err: std::io::Error| FetchError::Destination { path: partial.to_path_buf(), reason: err.to_string() };
    // Read as well as write: the hasher of a ranged download reads the written parts back.
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(partial)
            .map_err(write_error)?,
    );
    let size = meta.size;
    let part_size = options.part_size.max(1024 * 1024);
    let store_error = |err: object_store::Error| match err {
        object_store::Error::Precondition { .. } => FetchError::ChangedDuringRead { name: name.to_string() },
        object_store::Error::NotFound { .. } => missing(vec![name.to_string()]),
        other => {
            FetchError::Store { uri: source.uri.clone(), location: location.to_string(), reason: other.to_string() }
        }
    };

    if size <= part_size {
        let _permit = semaphore.acquire().await.map_err(|err| FetchError::Store {
            uri: source.uri.clone(),
            location: location.to_string(),
            reason: err.to_string(),
        })?;
        let get = GetOptions { if_match: meta.e_tag.clone(), version: meta.version.clone(), ..GetOptions::default() };
        let result = source.store.get_opts(&location, get).await.map_err(store_error)?;
        let e_tag = result.meta.e_tag.clone().or_else(|| meta.e_tag.clone());
        let version = result.meta.version.clone().or_else(|| meta.version.clone());
        let mut stream = result.into_stream();
        let mut hasher = (hashing == Hashing::On).then(Sha256::new);
        let mut offset = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store_error)?;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            file.write_all_at(&chunk, offset).map_err(write_error)?;
            offset += chunk.len() as u64;
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            progress(Progress::Bytes(chunk.len() as u64));
        }
        if offset != size {
            return Err(FetchError::ChangedDuringRead { name: name.to_string() });
        }
        return Ok((hasher.map(|h| h.finalize().into()), e_tag, version));
    }

    // Large object: ranges in parallel, each written at its offset; a hasher task reads the file back in order as the
    // ranges before it complete, so nothing but in-flight network buffers is held in memory.
    file.set_len(size).map_err(write_error)?;
    let parts = size.div_ceil(part_size);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let hasher_file = file.clone();
    let hash = hashing == Hashing::On;
    let hasher = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut completed = BTreeSet::new();
        let mut next = 0u64;
        while let Some(part) = done_rx.recv().await {
            completed.insert(part);
            while completed.remove(&next) {
                let start = next * part_size;
                let end = (start + part_size).min(size);
                if hash {
                    let file = hasher_file.clone();
                    let moved = hasher;
                    hasher = tokio::task::spawn_blocking(move || hash_range(&file, moved, start, end))
                        .await
                        .map_err(|err| std::io::Error::other(err.to_string()))??;
                }
                next += 1;
            }
        }
        Ok::<_, std::io::Error>((next, hasher.finalize().into()))
    });
    let ranges = (0..parts).map(|part| {
        let semaphore = semaphore.clone();
        let file = file.clone();
        let bytes = bytes.clone();
        let progress = progress.clone();
        let done_tx = done_tx.clone();
        let location = location.clone();
        let get = GetOptions {
            if_match: meta.e_tag.clone(),
            version: meta.version.clone(),
            range: Some(GetRange::Bounded(part * part_size..((part + 1) * part_size).min(size))),
            ..GetOptions::default()
        };
        let store_error = &store_error;
        async move {
            let _permit = semaphore.acquire().await.map_err(|err| FetchError::Store {
                uri: source.uri.clone(),
                location: location.to_string(),
                reason: err.to_string(),
            })?;
            let expected = part * part_size..((part + 1) * part_size).min(size);
            let result = source.store.get_opts(&location, get).await.map_err(store_error)?;
            let meta = result.meta.clone();
            let mut offset = expected.start;
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(store_error)?;
                if offset + chunk.len() as u64 > expected.end {
                    return Err(FetchError::ChangedDuringRead { name: name.to_string() });
                }
                file.write_all_at(&chunk, offset).map_err(write_error)?;
                offset += chunk.len() as u64;
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                progress(Progress::Bytes(chunk.len() as u64));
            }
            if offset != expected.end {
                return Err(FetchError::ChangedDuringRead { name: name.to_string() });
            }
            let _ = done_tx.send(part);
            Ok::<_, FetchError>((meta.e_tag, meta.version))
        }
    });
    let pinned: Vec<(Option<String>, Option<String>)> =
        futures::stream::iter(ranges).buffer_unordered(options.concurrency.max(1)).try_collect().await?;
    drop(done_tx);
    let (hashed_parts, digest) = hasher
        .await
        .map_err(|err| FetchError::Destination { path: partial.to_path_buf(), reason: err.to_string() })?
        .map_err(write_error)?;
    if hashed_parts != parts {
        return Err(FetchError::ChangedDuringRead { name: name.to_string() });
    }
    let e_tag = pinned.iter().find_map(|(tag, _)| tag.clone()).or_else(|| meta.e_tag.clone());
    let version = pinned.iter().find_map(|(_, version)| version.clone()).or_else(|| meta.version.clone());
    Ok((hash.then_some(digest), e_tag, version))
}

/// Hashes `start..end` of `file` into `hasher`, 1 MiB at a time.
fn hash_range(file: &std::fs::File, mut hasher: Sha256, start: u64, end: u64) -> Result<Sha256, std::io::Error> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = start;
    while offset < end {
        let want = usize::try_from((end - offset).min(buffer.len() as u64)).unwrap_or(buffer.len());
        let read = file.read_at(&mut buffer[..want], offset)?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the partial file is shorter than the object",
            ));
        }
        hasher.update(&buffer[..read]);
        offset += read as u64;
    }
    Ok(hasher)
}

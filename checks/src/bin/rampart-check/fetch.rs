//! `rampart-check fetch`: download a signed model from object storage (or a path) into a directory, keeping only files
//! whose sha256 matches the signed manifest. Run by the init container of check Jobs and canary pods, so what is checked
//! and served is the verified copy. Exit codes as `verify`: 0 verified, 1 not verified, 2 usage or I/O error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_checks::fetch::{
    DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, FetchError, FetchOptions, FetchReport, Progress, fetch_verified,
};
use rampart_checks::signing::{SignatureError, TrustedKey, read_bundle_file, read_trusted_keys};
use rampart_checks::smoke::termination::{
    FileRead, TERMINATION_LOG_ENV, TerminationMessage, write_termination_message,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress lines and a summary for people, on stderr and stdout.
    Text,
    /// JSON lines of progress on stderr and one JSON report on stdout.
    Json,
}

/// Arguments of `rampart-check fetch`.
#[derive(clap::Args)]
pub struct Args {
    /// A trusted PEM public key (ECDSA P-256); repeat for several.
    #[arg(long = "key", value_name = "PUBLIC.pem", required_unless_present = "keys_pem")]
    keys: Vec<PathBuf>,
    /// Trusted PEM public keys as text, one or more blocks (how the controller passes its keys to an init container,
    /// in the pod spec it alone writes).
    #[arg(long = "keys-pem", env = "RAMPART_TRUSTED_KEYS", value_name = "PEM", hide_env_values = true)]
    keys_pem: Option<String>,
    /// The signature bundle (JSON).
    #[arg(long, value_name = "BUNDLE", required_unless_present = "bundle_json")]
    bundle: Option<PathBuf>,
    /// The signature bundle as JSON text (how the controller passes it to an init container).
    #[arg(long = "bundle-json", env = "RAMPART_BUNDLE", value_name = "JSON", hide_env_values = true)]
    bundle_json: Option<String>,
    /// The model name the signed statement must name (a rollout's `spec.model`, or its explicit mapping).
    #[arg(long = "model", value_name = "NAME")]
    model: String,
    /// The digest the rollout names (`sha256:<hex>`).
    #[arg(long, value_name = "sha256:HEX")]
    expected_digest: Option<String>,
    /// A path below the artifact to leave out in addition to those the bundle lists (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<String>,
    /// The directory the verified copy goes to (created; must be empty or hold an earlier fetch of this model).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Files larger than this many MiB are read in parallel ranges of this size.
    #[arg(long, default_value_t = DEFAULT_PART_SIZE / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=4096))]
    part_size_mib: u64,
    /// Range requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the verdict JSON here (default: /dev/termination-log when it exists, as in a Pod).
    #[arg(long, env = TERMINATION_LOG_ENV)]
    termination_log: Option<PathBuf>,
    /// The artifact: `s3://bucket/prefix`, `gs://...`, `az://...`, `https://...`, or a path.
    #[arg(value_name = "URI")]
    uri: String,
}

/// Fetches and verifies; prints progress and the report; writes the termination message.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rampart-check fetch: cannot start the I/O runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(fetch(&args));
    let code = match &result {
        Ok(_) => 0,
        Err(err) => err.exit_code(),
    };
    let message = match &result {
        Ok(report) => TerminationMessage {
            curve: Vec::new(),
            files: report
                .files
                .iter()
                .map(|f| FileRead {
                    name: f.name.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                    version: f.version.clone(),
                })
                .collect(),
            check: "fetch".into(),
            passed: true,
            summary: format!(
                "verified {} ({} file(s), {}) signed by key {}",
                report.model_digest,
                report.files.len(),
                human_bytes(report.bytes),
                report.key_id
            ),
            reasons: Vec::new(),
        },
        Err(err) => TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: "fetch".into(),
            passed: false,
            summary: if code == 1 { "artifact not verified".into() } else { "artifact not fetched".into() },
            reasons: vec![err.to_string()],
        },
    };
    if let Err(err) = write_termination_message(args.termination_log.as_deref(), &message) {
        eprintln!("rampart-check fetch: cannot write the termination message: {err}");
    }
    match (&result, args.format) {
        (Ok(report), Format::Json) => println!("{}", report_json(report)),
        (Ok(report), Format::Text) => {
            println!(
                "verified {} from {} into {}: {} file(s), {} in {:.1}s, signed by key {} ({}) as model {:?}",
                report.model_digest,
                report.source,
                report.model_path.display(),
                report.files.len(),
                human_bytes(report.bytes),
                report.seconds,
                report.key_id,
                report.key_label,
                report.model_name
            );
            if !report.listed {
                println!("note: this store cannot be listed, so files beside the signed ones were not looked for");
            }
        }
        (Err(err), Format::Json) => println!(
            "{}",
            serde_json::json!({"verified": false, "reason": err.to_string(), "label": err.metric_label()})
        ),
        (Err(err), Format::Text) if code == 1 => eprintln!("rampart-check fetch: NOT VERIFIED: {err}"),
        (Err(err), Format::Text) => eprintln!("rampart-check fetch: {err}"),
    }
    ExitCode::from(code)
}

fn report_json(report: &FetchReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["verified"] = serde_json::json!(true);
    value
}

async fn fetch(args: &Args) -> Result<FetchReport, FetchError> {
    let mut trusted = read_trusted_keys(&args.keys)?;
    if let Some(text) = &args.keys_pem {
        let keys = TrustedKey::all_from_pem(text, "RAMPART_TRUSTED_KEYS")
            .map_err(|reason| SignatureError::Key { path: PathBuf::from("RAMPART_TRUSTED_KEYS"), reason })?;
        trusted.extend(keys);
    }
    let bundle = match (&args.bundle, &args.bundle_json) {
        (Some(path), _) => read_bundle_file(path)?,
        (None, Some(json)) => json.as_bytes().to_vec(),
        (None, None) => return Err(SignatureError::BundleNotJson { detail: "no bundle was given".into() }.into()),
    };
    let mut options = FetchOptions::new(trusted, bundle, &args.model, &args.to);
    options.expected_digest = args.expected_digest.clone();
    options.extra_ignore_paths = args.ignore_paths.clone();
    options.part_size = args.part_size_mib * 1024 * 1024;
    options.concurrency = usize::try_from(args.concurrency).unwrap_or(DEFAULT_CONCURRENCY);
    fetch_verified(&args.uri, &options, progress_printer(args.format)).await
}

/// Progress on stderr, at most once a second: a line for people, or a JSON line.
fn progress_printer(format: Format) -> Arc<dyn Fn(Progress) + Send + Sync> {
    let total = Arc::new(AtomicU64::new(0));
    let files = Arc::new(AtomicUsize::new(0));
    let done_bytes = Arc::new(AtomicU64::new(0));
    let done_files = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let last = Mutex::new(Instant::now());
    Arc::new(move |event| {
        let mut force = false;
        match event {
            Progress::Started { files: count, bytes } => {
                files.store(count, Ordering::Relaxed);
                total.store(bytes, Ordering::Relaxed);
                force = true;
            }
            Progress::Bytes(bytes) => {
                done_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Progress::FileVerified { name, size } => {
                done_files.fetch_add(1, Ordering::Relaxed);
                if format == Format::Json {
                    eprintln!("{}", serde_json::json!({"event": "verified", "file": name, "bytes": size}));
                }
                force = true;
            }
        }
        let Ok(mut last) = last.lock() else { return };
        if !force && last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        let (done, all) = (done_bytes.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        let (verified, count) = (done_files.load(Ordering::Relaxed), files.load(Ordering::Relaxed));
        let mut stderr = std::io::stderr().lock();
        let _ = match format {
            Format::Json => writeln!(
                stderr,
                "{}",
                serde_json::json!({"event": "progress", "bytes": done, "totalBytes": all, "filesVerified": verified,
                    "files": count, "bytesPerSecond": rate.round()})
            ),
            Format::Text => writeln!(
                stderr,
                "fetch: {} / {} ({verified}/{count} file(s) verified), {}/s",
                human_bytes(done),
                human_bytes(all),
                human_bytes(rate as u64)
            ),
        };
    })
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

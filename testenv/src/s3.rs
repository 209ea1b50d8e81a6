//! A throwaway S3-compatible object store: SeaweedFS's `weed server` (built from Go modules by `testenv/build`) on
//! loopback ports, its data in a temporary directory removed when the handle drops or the test binary exits. No
//! identities are configured, so it accepts any access key; tests and the bench talk to it with the standard AWS
//! environment ([`S3Server::aws_env`]), exactly as `rampart-check fetch` does in a cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{Supervised, free_port};

/// The region the tests use (SeaweedFS ignores it, the S3 signing needs one).
pub const REGION: &str = "us-east-1";

/// A running SeaweedFS server with its S3 gateway.
pub struct S3Server {
    s3_port: u16,
    server: Supervised,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts master, volume, filer and S3 gateway in one `weed server` process; ready in a few seconds.
    pub fn start() -> Result<Self, Error> {
        let weed = weed_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("rampart-s3-")
            .tempdir()
            .map_err(|source| Error::Io { context: "creating the S3 server directory".into(), source })?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)
            .map_err(|source| Error::Io { context: "creating the S3 data directory".into(), source })?;
        // Every listener on a port of its own: weed's defaults (9333, 8080, 8888, 8333 and +10000 for gRPC) would clash
        // with other test binaries running at the same time.
        let mut ports = Vec::new();
        for _ in 0..8 {
            ports.push(free_port()?);
        }
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = ports[..] else {
            return Err(Error::Missing { what: "free loopback ports".into(), hint: "free some ports".into() });
        };
        let args: Vec<String> = vec![
            "server".into(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={master_grpc}"),
            // Every bucket is a collection that grows its own volumes (7 at a time): allow plenty of small ones, or
            // the third bucket finds "no writable volumes" (the default derives the count from the disk's free space).
            "-master.volumeSizeLimitMB=256".into(),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={volume_grpc}"),
            "-volume.max=2000".into(),
            "-filer".into(),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={filer_grpc}"),
            "-s3".into(),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={s3_grpc}"),
        ];
        let log = dir.path().join("weed.log");
        let server = Supervised::spawn("weed (S3)", &weed, &args, &log, "TERM", None)?;
        let mut s3_server = Self { s3_port: s3, server, _dir: dir };
        s3_server.wait_ready(Duration::from_secs(60))?;
        Ok(s3_server)
    }

    /// Waits until a bucket can be created and an object written through the S3 API (the gateway answers before the
    /// filer and volume server behind it are ready).
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let probe = "rampart-ready-probe";
        loop {
            self.server.ensure_running()?;
            if self.create_bucket(probe).is_ok() && self.put_object(probe, "probe", b"ok".to_vec()).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { name: "weed (S3)".into(), log_tail: self.server.log_tail() });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The standard AWS environment that points an S3 client at this server (plain http allowed, any keys).
    pub fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "rampart-test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "rampart-test-secret".into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// Creates a bucket (an existing one is fine).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        self.request(reqwest::Method::PUT, &format!("{}/{bucket}", self.endpoint()), Vec::new(), &[200, 409])
    }

    /// Writes (or overwrites) one object.
    pub fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), Error> {
        self.request(reqwest::Method::PUT, &format!("{}/{bucket}/{key}", self.endpoint()), body, &[200])
    }

    /// Writes one object from a local file, streaming it (multi-GB bench files do not go through memory).
    pub fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), Error> {
        let url = format!("{}/{bucket}/{key}", self.endpoint());
        let path = path.to_path_buf();
        let context = format!("uploading {} to {url}", path.display());
        let outcome = on_private_runtime(async move {
            // SeaweedFS may answer a write with a 500 "please try again"; so do we, a few times.
            let mut last = String::new();
            for attempt in 0..5u64 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                let file = tokio::fs::File::open(&path).await.map_err(|err| err.to_string())?;
                let length = file.metadata().await.map_err(|err| err.to_string())?.len();
                let body = reqwest::Body::wrap_stream(tokio_util_stream(file));
                let response = reqwest::Client::new()
                    .put(&url)
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(body)
                    .send()
                    .await
                    .map_err(|err| err.to_string())?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                last = format!("{status}: {}", response.text().await.unwrap_or_default());
                if !status.is_server_error() {
                    break;
                }
            }
            Err(last)
        })?;
        outcome.map_err(|message| Error::S3 { context, message })
    }

    /// Deletes one object.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.request(reqwest::Method::DELETE, &format!("{}/{bucket}/{key}", self.endpoint()), Vec::new(), &[200, 204])
    }

    /// Uploads every file under `dir` to `bucket` under `prefix` (`prefix/relative/path`).
    pub fn put_dir(&self, bucket: &str, prefix: &str, dir: &Path) -> Result<(), Error> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files)?;
        for (relative, path) in files {
            let key = if prefix.is_empty() { relative } else { format!("{}/{relative}", prefix.trim_end_matches('/')) };
            self.put_file(bucket, &key, &path)?;
        }
        Ok(())
    }

    fn request(&self, method: reqwest::Method, url: &str, body: Vec<u8>, ok: &[u16]) -> Result<(), Error> {
        let context = format!("{method} {url}");
        let url = url.to_string();
        let ok = ok.to_vec();
        let outcome = on_private_runtime(async move {
            let response =
                reqwest::Client::new().request(method, &url).body(body).send().await.map_err(|err| err.to_string())?;
            let status = response.status().as_u16();
            if ok.contains(&status) {
                Ok(())
            } else {
                Err(format!("HTTP {status}: {}", response.text().await.unwrap_or_default()))
            }
        })?;
        outcome.map_err(|message| Error::S3 { context, message })
    }
}

/// A file as a stream of byte chunks (for a streaming request body).
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(buffer), file))
            }
            Err(err) => Some((Err(err), file)),
        }
    })
}

/// Runs a future on a private runtime in its own thread, so these helpers work from plain code and from inside a
/// test's runtime alike.
fn on_private_runtime<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, Error> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().map(|runtime| runtime.block_on(future))
    })
    .join()
    .map_err(|_| Error::SharedFailed("an S3 helper thread panicked".into()))?
    .map_err(|source| Error::Io { context: "starting a runtime for an S3 request".into(), source })
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| Error::Io { context: format!("reading {}", dir.display()), source })?;
    for entry in entries {
        let path = entry.map_err(|source| Error::Io { context: format!("reading {}", dir.display()), source })?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push((parts.join("/"), path.clone()));
        }
    }
    Ok(())
}

/// The `weed` binary `testenv/build` built.
fn weed_binary() -> Result<PathBuf, Error> {
    let path = crate::bin_dir().join("weed");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            what: format!("the S3 server ({})", path.display()),
            hint: "run testenv/build (it builds SeaweedFS from Go modules)".into(),
        })
    }
}

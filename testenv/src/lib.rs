//! The test control plane: a real etcd and kube-apiserver (built from Go modules by `testenv/build`) and a throwaway
//! PostgreSQL, all on loopback, for Rampart's integration tests, benchmarks and demo.
//!
//! ```no_run
//! # async fn example() -> Result<(), rampart_testenv::Error> {
//! let env = rampart_testenv::shared()?;          // started once per test binary, CRDs installed
//! let client = env.client().await?;               // one client per test (clients belong to a runtime)
//! let namespace = env.namespace(&client, "my-test").await?; // a fresh namespace isolates the test
//! let database_url = rampart_testenv::shared_postgres()?.new_database()?;
//! # let _ = (namespace, database_url); Ok(()) }
//! ```
//!
//! Every process runs under a watchdog that stops it when the test binary exits, also on panic or SIGKILL.
#![forbid(unsafe_code)]

mod control_plane;
mod crds;
pub mod kubelet;
pub mod load_driver;
pub mod model_server;
mod postgres;
mod process;
pub mod prometheus;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use control_plane::{ControlPlane, client_from_kubeconfig};
pub use crds::install_crds;
pub use load_driver::{
    BackendCounts, CohortTraffic, HeaderCondition, LoadDriver, LoadOptions, RouteSource, TrafficSplit,
};
pub use model_server::{Behaviour, Latency, ModelServer, ModelServerConfig, ServedCounts};
pub use postgres::Postgres;
/// A process under the watchdog (stops when this process exits), for tools like `rampart-testenv up`.
pub use process::Supervised;
pub use process::free_port;
pub use prometheus::{Prometheus, PrometheusOptions, Sample};
pub use s3::S3Server;

/// Everything that can go wrong while starting or talking to the test servers, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found: {hint}")]
    Missing { what: String, hint: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{context} failed ({status}):\n{output}")]
    Command { context: String, status: String, output: String },
    #[error("{name} exited early ({status}); its log ends with:\n{log_tail}")]
    Exited { name: String, status: String, log_tail: String },
    #[error("{name} did not become ready in time; its log ends with:\n{log_tail}")]
    NotReady { name: String, log_tail: String },
    #[error("{context}: {message}")]
    Kube { context: String, message: String },
    #[error("{context}: {message}")]
    S3 { context: String, message: String },
    #[error("the shared test environment failed to start earlier: {0}")]
    SharedFailed(String),
}

/// The repository root (the workspace that holds `crds/` and `target/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Where `testenv/build` puts etcd and kube-apiserver: `$RAMPART_TESTENV_BIN`, else `target/testenv/bin`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("RAMPART_TESTENV_BIN").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/testenv/bin"))
}

/// The CRD folders installed into every test control plane: Rampart's own (`crds/`), the real Gateway API HTTPRoute
/// CRD that `testenv/build` downloads (`<bin_dir>/crds/`), and a minimal KServe InferenceService (`testenv/crds/`).
pub fn crd_dirs() -> Vec<PathBuf> {
    vec![repo_root().join("crds"), bin_dir().join("crds"), repo_root().join("testenv/crds")]
}

/// The Gateway API CRD file `testenv/build` puts beside the binaries.
const GATEWAY_CRD: &str = "crds/gateway.networking.k8s.io_httproutes.yaml";

/// A running control plane with the CRDs installed.
pub struct TestEnv {
    control_plane: ControlPlane,
}

impl TestEnv {
    /// Starts a new control plane (a few seconds) and installs the CRDs. Most tests want [`shared`] instead.
    pub fn start() -> Result<Self, Error> {
        let gateway_crd = bin_dir().join(GATEWAY_CRD);
        if !gateway_crd.is_file() {
            return Err(Error::Io {
                context: format!(
                    "{} is missing: run testenv/build (it downloads the Gateway API CRD)",
                    gateway_crd.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let control_plane = ControlPlane::start(&bin_dir())?;
        let kubeconfig = control_plane.kubeconfig_path().to_path_buf();
        // CRD installation is async; run it on a private runtime in its own thread so this works from inside a test's
        // runtime as well as from plain code.
        let installed = std::thread::spawn(move || -> Result<(), Error> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| Error::Io { context: "starting a runtime for CRD installation".into(), source })?;
            runtime.block_on(async {
                let client = client_from_kubeconfig(&kubeconfig).await?;
                install_crds(&client, &crd_dirs()).await
            })
        })
        .join()
        .map_err(|_| Error::SharedFailed("the CRD installation thread panicked".into()))?;
        installed?;
        Ok(Self { control_plane })
    }

    /// The control plane (kubeconfig path, server URL, token).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// Path of an admin kubeconfig for this control plane.
    pub fn kubeconfig_path(&self) -> &Path {
        self.control_plane.kubeconfig_path()
    }

    /// A new client for the current tokio runtime.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        self.control_plane.client().await
    }

    /// Creates a namespace named `<prefix>-<n>` that no other test uses, and returns its name.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> Result<String, Error> {
        use k8s_openapi::api::core::v1::Namespace;
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|err| Error::Kube { context: "building a namespace".into(), message: err.to_string() })?;
        kube::Api::<Namespace>::all(client.clone())
            .create(&kube::api::PostParams::default(), &namespace)
            .await
            .map_err(|err| Error::Kube { context: format!("creating namespace {name}"), message: err.to_string() })?;
        Ok(name)
    }
}

/// The status a Deployment controller and kubelet would report once `deployment` has rolled out its current spec
/// (all replicas updated, ready and available), or None when its status already says so. No controller-manager runs
/// in the test control plane, so tests, benches and the demo apply this as a status patch themselves.
pub fn rolled_out_status(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Option<serde_json::Value> {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let observed = deployment.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
    if observed >= generation {
        return None;
    }
    let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    Some(serde_json::json!({"status": {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }}))
}

/// The control plane shared by all tests of one test binary, started on first use. Tests isolate themselves with
/// [`TestEnv::namespace`].
pub fn shared() -> Result<&'static TestEnv, Error> {
    static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TestEnv::start().map_err(|err| err.to_string()))
        .as_ref()
        .map_err(|err| Error::SharedFailed(err.clone()))
}

/// The Postgres server shared by all tests of one test binary, started on first use. Tests isolate themselves with
/// [`Postgres::new_database`]. Tests that stop the server (outages) start their own with [`Postgres::start`].
pub fn shared_postgres() -> Result<&'static Postgres, Error> {
    static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| Postgres::start().map_err(|err| err.to_string()))
        .as_ref()
        .map_err(|err| Error::SharedFailed(err.clone()))
}

/// The Prometheus server shared by all tests of one test binary, started on first use (1 s scrape interval). Tests
/// add their model servers with [`Prometheus::add_target`] and keep their series apart with a `namespace` label
/// ([`ModelServerConfig::namespace`]) in their queries. Tests that stop Prometheus (outages) start their own with
/// [`Prometheus::start`].
pub fn shared_prometheus() -> Result<&'static Prometheus, Error> {
    static SHARED: OnceLock<Result<Prometheus, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            // A short scrape interval keeps the skew between two targets' samples small next to the short analysis
            // windows of tests (a skewed pair of counters looks like a traffic-split mismatch).
            Prometheus::start_with(PrometheusOptions::default().scrape_interval(std::time::Duration::from_millis(250)))
                .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| Error::SharedFailed(err.clone()))
}

/// The S3 server shared by all tests of one test binary, started on first use. Tests isolate themselves with a bucket
/// of their own ([`S3Server::create_bucket`]).
pub fn shared_s3() -> Result<&'static S3Server, Error> {
    static SHARED: OnceLock<Result<S3Server, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| S3Server::start().map_err(|err| err.to_string()))
        .as_ref()
        .map_err(|err| Error::SharedFailed(err.clone()))
}

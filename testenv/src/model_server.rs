//! A stand-in model server for tests and the demo: answers `POST /predict` on 127.0.0.1 with a configurable accuracy
//! (against the label the request carries), error rate and log-normal latency, and exports Prometheus metrics labelled
//! with its `version` (and `namespace`) at `/metrics`. Behaviour can change at run time, so a canary can regress
//! mid-rollout.
//!
//! Metrics (OpenMetrics text, every series carries `version` and, when configured, `namespace`):
//! - `model_requests_total{code}`: requests answered, by HTTP status code (`200` and `500` exist from the start);
//! - `model_predictions_labelled_total`: successful predictions for requests that carried a label;
//! - `model_predictions_correct_total`: of those, the correct ones;
//!
//! With a label delay ([`ModelServerConfig::label_delay`]) the two prediction counters grow only that long after the
//! prediction, as when true labels arrive later than the predictions they judge.
//! - `model_request_duration_seconds`: histogram (`_bucket{le}`, `_sum`, `_count`) of the time to answer.
//!
//! ```no_run
//! # async fn example() -> Result<(), rampart_testenv::Error> {
//! use rampart_testenv::{ModelServer, ModelServerConfig};
//! let canary = ModelServer::spawn(ModelServerConfig::new("v2").namespace("my-test").accuracy(0.95)).await?;
//! println!("predict at {}/predict, metrics at {}/metrics", canary.url(), canary.url());
//! canary.set_accuracy(0.85); // the canary regresses from now on
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::Error;

/// The longest latency the server will sleep for one request, whatever the distribution draws.
const MAX_LATENCY: Duration = Duration::from_secs(30);

/// Upper bounds (seconds) of the latency histogram's buckets: fine steps around the default 5-20 ms so that a +50% p95
/// shift moves requests across several buckets, then coarser up to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.012, 0.014, 0.016, 0.018, 0.020, 0.025,
    0.030, 0.035, 0.040, 0.050, 0.060, 0.080, 0.100, 0.150, 0.200, 0.300, 0.500, 1.0, 2.5, 5.0, 10.0,
];

/// How long a request takes: log-normal around `median` with shape `sigma` (0 = always exactly `median`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The median latency.
    #[serde(with = "duration_seconds")]
    pub median: Duration,
    /// The standard deviation of the latency's logarithm; 0.25 gives a p95 about 1.5 times the median.
    pub sigma: f64,
}

impl Default for Latency {
    /// A median of 10 ms with sigma 0.25 (p95 about 15 ms).
    fn default() -> Self {
        Self { median: Duration::from_millis(10), sigma: 0.25 }
    }
}

/// What the server does with each request; changeable at run time with [`ModelServer::set_behaviour`] and friends.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// Probability that a labelled prediction is correct, in `[0, 1]`.
    pub accuracy: f64,
    /// Probability that a request fails with HTTP 500, in `[0, 1]`.
    pub error_rate: f64,
    /// The latency distribution, really slept for every request (also for failing ones).
    pub latency: Latency,
    /// Probability that the answer differs from what an identical model would answer for the same request (the
    /// predicted class moves by one), in `[0, 1]`: how a shadow candidate disagrees with production.
    #[serde(default)]
    pub disagree: f64,
    /// Probability that a request is dropped: answered with HTTP 503 and no response logged, in `[0, 1]` (a
    /// candidate that loses mirrored requests).
    #[serde(default)]
    pub drop: f64,
    /// LLM servers (with [`ModelServerConfig::llm_metrics`]): time to first token of each answer.
    #[serde(default = "default_time_to_first_token")]
    pub time_to_first_token: Latency,
    /// LLM servers: time between two generated tokens.
    #[serde(default = "default_inter_token")]
    pub inter_token: Latency,
    /// LLM servers: tokens generated per answer, at least 1.
    #[serde(default = "default_output_tokens")]
    pub output_tokens: u32,
}

fn default_time_to_first_token() -> Latency {
    Latency { median: Duration::from_millis(50), sigma: 0.25 }
}

fn default_inter_token() -> Latency {
    Latency { median: Duration::from_millis(10), sigma: 0.25 }
}

fn default_output_tokens() -> u32 {
    16
}

impl Default for Behaviour {
    /// Accuracy 0.9, no errors, the default [`Latency`], no disagreement, nothing dropped.
    fn default() -> Self {
        Self {
            accuracy: 0.9,
            error_rate: 0.0,
            latency: Latency::default(),
            disagree: 0.0,
            drop: 0.0,
            time_to_first_token: default_time_to_first_token(),
            inter_token: default_inter_token(),
            output_tokens: default_output_tokens(),
        }
    }
}

impl Behaviour {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.accuracy) {
            return Err(format!("accuracy must be within [0, 1], not {}", self.accuracy));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!("error rate must be within [0, 1], not {}", self.error_rate));
        }
        if !(0.0..=1.0).contains(&self.disagree) {
            return Err(format!("disagree must be within [0, 1], not {}", self.disagree));
        }
        if !(0.0..=1.0).contains(&self.drop) {
            return Err(format!("drop must be within [0, 1], not {}", self.drop));
        }
        if !self.latency.sigma.is_finite() || self.latency.sigma < 0.0 {
            return Err(format!("latency sigma must be a finite number >= 0, not {}", self.latency.sigma));
        }
        for (what, latency) in [("time to first token", self.time_to_first_token), ("inter-token", self.inter_token)] {
            if !latency.sigma.is_finite() || latency.sigma < 0.0 || latency.median > MAX_LATENCY {
                return Err(format!("{what} latency must have a finite sigma >= 0 and a median up to {MAX_LATENCY:?}"));
            }
        }
        if self.output_tokens == 0 || self.output_tokens > 4096 {
            return Err(format!("output tokens must be 1 to 4096, not {}", self.output_tokens));
        }
        if self.latency.median > MAX_LATENCY {
            return Err(format!("latency median must be at most {MAX_LATENCY:?}, not {:?}", self.latency.median));
        }
        Ok(())
    }
}

/// How to start a [`ModelServer`]. Build with [`ModelServerConfig::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelServerConfig {
    /// The model version this server plays; the `version` label of every metric.
    pub version: String,
    /// The `namespace` label of every metric, when set. Tests sharing one Prometheus set it to their own namespace and
    /// put it in their queries, so their series do not mix.
    pub namespace: Option<String>,
    /// Initial behaviour.
    pub behaviour: Behaviour,
    /// Number of classes the model predicts (labels are `0..classes`); at least 2.
    pub classes: u32,
    /// Seed of the random choices (accuracy, errors, latency); `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where requests and responses are logged as CloudEvents, when set.
    pub logger: Option<InferenceLogger>,
    /// Also export the metrics of a vLLM-style LLM server (see [`ModelServerConfig::llm_metrics`]).
    pub llm_metrics: bool,
    /// How long after a labelled prediction its outcome is counted (`model_predictions_labelled_total` and
    /// `model_predictions_correct_total`); zero counts it at once.
    pub label_delay: Duration,
}

/// Where a model server logs each request and response as a CloudEvent in binary mode, the format of KServe's
/// inference logger: `ce-id` is the request id (the `x-request-id` header, or one made up), `ce-type`
/// `org.kubeflow.serving.inference.request` or `.response`, and the extensions below. `rampart-shadow` pairs them.
#[derive(Clone, Debug, PartialEq)]
pub struct InferenceLogger {
    /// URL the events are POSTed to.
    pub url: String,
    /// `ce-endpoint`: which side this server plays, e.g. `baseline` or `canary`.
    pub endpoint: String,
    /// `ce-inferenceservicename`: the model's name.
    pub model: String,
}

/// CloudEvent type of a logged request.
pub const REQUEST_EVENT: &str = "org.kubeflow.serving.inference.request";
/// CloudEvent type of a logged response.
pub const RESPONSE_EVENT: &str = "org.kubeflow.serving.inference.response";
/// Events waiting to be sent before new ones are dropped (and counted).
const LOG_QUEUE: usize = 10_000;

impl ModelServerConfig {
    /// A server for `version` with the default behaviour (accuracy 0.9, no errors, ~10 ms), 10 classes, a free port.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            namespace: None,
            behaviour: Behaviour::default(),
            classes: 10,
            seed: None,
            port: 0,
            logger: None,
            llm_metrics: false,
            label_delay: Duration::ZERO,
        }
    }

    /// Also exports what a vLLM server exports for each answer, with the `version` and `namespace` labels:
    /// `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds` and `vllm:e2e_request_latency_seconds`
    /// histograms, and `http_requests_total{handler="/v1/completions",method="POST",status="2xx"|"5xx"}`. The
    /// token timings are drawn from [`Behaviour::time_to_first_token`] and [`Behaviour::inter_token`] and recorded,
    /// not slept, so a test is not slowed by them.
    pub fn llm_metrics(mut self) -> Self {
        self.llm_metrics = true;
        self
    }

    /// Sets the time to first token (LLM metrics): log-normal with this median and sigma.
    pub fn time_to_first_token(mut self, median: Duration, sigma: f64) -> Self {
        self.behaviour.time_to_first_token = Latency { median, sigma };
        self
    }

    /// Logs every request and response to `url` as CloudEvents, as side `endpoint` (`baseline`, `canary`) of `model`.
    pub fn logger(mut self, url: impl Into<String>, endpoint: impl Into<String>, model: impl Into<String>) -> Self {
        self.logger = Some(InferenceLogger { url: url.into(), endpoint: endpoint.into(), model: model.into() });
        self
    }

    /// Sets the probability that an answer differs from an identical model's.
    pub fn disagree(mut self, disagree: f64) -> Self {
        self.behaviour.disagree = disagree;
        self
    }

    /// Counts each labelled prediction's outcome only `delay` after the prediction, as when labels arrive late.
    pub fn label_delay(mut self, delay: Duration) -> Self {
        self.label_delay = delay;
        self
    }

    /// Sets the `namespace` label of the metrics.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the probability that a labelled prediction is correct.
    pub fn accuracy(mut self, accuracy: f64) -> Self {
        self.behaviour.accuracy = accuracy;
        self
    }

    /// Sets the probability of an HTTP 500.
    pub fn error_rate(mut self, error_rate: f64) -> Self {
        self.behaviour.error_rate = error_rate;
        self
    }

    /// Sets the latency distribution: log-normal with this median and sigma.
    pub fn latency(mut self, median: Duration, sigma: f64) -> Self {
        self.behaviour.latency = Latency { median, sigma };
        self
    }

    /// Sets the number of classes.
    pub fn classes(mut self, classes: u32) -> Self {
        self.classes = classes;
        self
    }

    /// Seeds the random choices, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Listens on this port of 127.0.0.1 instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

/// Body of `POST /predict`. Every field is optional; a request without `label` is served but not counted as labelled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictRequest {
    /// The true class, in `0..classes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u32>,
    /// Input features; ignored (the answer depends only on the label and the configured accuracy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<f64>,
}

/// Answer of `POST /predict` (HTTP 200).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictResponse {
    /// The version that answered.
    pub version: String,
    /// The predicted class.
    pub prediction: u32,
    /// Whether the prediction equals the request's label (absent for unlabelled requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
}

/// What the server has answered so far, read from its own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServedCounts {
    /// All requests answered (any status).
    pub requests: u64,
    /// Requests answered with HTTP 500 (injected failures).
    pub errors: u64,
    /// Successful predictions for labelled requests.
    pub labelled: u64,
    /// Correct ones among `labelled`.
    pub correct: u64,
}

/// The metrics one server exports.
struct Metrics {
    registry: Registry,
    requests: Family<Vec<(String, String)>, Counter>,
    labelled: Counter,
    correct: Counter,
    duration: Histogram,
    llm: Option<LlmMetrics>,
}

/// What a vLLM-style server exports, for [`ModelServerConfig::llm_metrics`].
struct LlmMetrics {
    time_to_first_token: Histogram,
    inter_token: Histogram,
    e2e: Histogram,
    http_requests: Family<Vec<(String, String)>, Counter>,
}

/// Buckets of the token-timing histograms, in seconds (vLLM's own are similar).
const TOKEN_BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];

fn http_label(ok: bool) -> Vec<(String, String)> {
    vec![
        ("handler".to_string(), "/v1/completions".to_string()),
        ("method".to_string(), "POST".to_string()),
        ("status".to_string(), if ok { "2xx" } else { "5xx" }.to_string()),
    ]
}

impl Metrics {
    fn new(version: &str, namespace: Option<&str>, llm: bool) -> Self {
        let mut labels: Vec<(Cow<'static, str>, Cow<'static, str>)> =
            vec![(Cow::Borrowed("version"), Cow::Owned(version.to_string()))];
        if let Some(namespace) = namespace {
            labels.push((Cow::Borrowed("namespace"), Cow::Owned(namespace.to_string())));
        }
        let mut registry = Registry::with_labels(labels.into_iter());
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let labelled = Counter::default();
        let correct = Counter::default();
        let duration = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "model_requests",
            "Requests answered by the model server, by HTTP status code",
            requests.clone(),
        );
        registry.register(
            "model_predictions_labelled",
            "Successful predictions for requests that carried a true label",
            labelled.clone(),
        );
        registry.register("model_predictions_correct", "Labelled predictions that were correct", correct.clone());
        registry.register(
            "model_request_duration_seconds",
            "Time to answer a request (including the simulated model latency)",
            duration.clone(),
        );
        // Both codes exist from the first scrape, so rate() and ratios work before the first failure.
        for code in [StatusCode::OK, StatusCode::INTERNAL_SERVER_ERROR] {
            let _ = requests.get_or_create(&code_label(code));
        }
        let llm = llm.then(|| {
            let llm = LlmMetrics {
                time_to_first_token: Histogram::new(TOKEN_BUCKETS.iter().copied()),
                inter_token: Histogram::new(TOKEN_BUCKETS.iter().copied()),
                e2e: Histogram::new(LATENCY_BUCKETS.iter().copied()),
                http_requests: Family::default(),
            };
            registry.register(
                "vllm:time_to_first_token_seconds",
                "Time to the first generated token",
                llm.time_to_first_token.clone(),
            );
            registry.register(
                "vllm:inter_token_latency_seconds",
                "Time between two generated tokens",
                llm.inter_token.clone(),
            );
            registry.register("vllm:e2e_request_latency_seconds", "Whole-request latency", llm.e2e.clone());
            registry.register(
                "http_requests",
                "HTTP requests by handler, method and status",
                llm.http_requests.clone(),
            );
            for ok in [true, false] {
                let _ = llm.http_requests.get_or_create(&http_label(ok));
            }
            llm
        });
        Self { registry, requests, labelled, correct, duration, llm }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn code_label(code: StatusCode) -> Vec<(String, String)> {
    vec![("code".to_string(), code.as_u16().to_string())]
}

/// State shared by the handle and the request handlers.
struct Shared {
    version: String,
    classes: u32,
    behaviour: Mutex<Behaviour>,
    rng: Mutex<StdRng>,
    metrics: Metrics,
    /// How long after a labelled prediction its outcome is counted.
    label_delay: Duration,
    /// Requests answered with any status (the sum of `model_requests_total`).
    answered: AtomicU64,
    /// The queue to the logger task, when logging.
    log: Option<mpsc::Sender<LogEvent>>,
    /// Events the logger could not take or deliver.
    log_lost: AtomicU64,
    /// Events delivered to the logger URL (2xx answer).
    log_sent: AtomicU64,
}

/// One logged request or response.
struct LogEvent {
    id: String,
    kind: &'static str,
    body: Bytes,
}

impl Shared {
    fn log(&self, id: &str, kind: &'static str, body: Bytes) {
        if let Some(queue) = &self.log
            && queue.try_send(LogEvent { id: id.to_string(), kind, body }).is_err()
        {
            self.log_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends logged events one after another (in the order they were logged) until the queue closes.
async fn run_logger(
    logger: InferenceLogger,
    namespace: Option<String>,
    source: String,
    mut queue: mpsc::Receiver<LogEvent>,
    shared: std::sync::Weak<Shared>,
) {
    let client = match reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("model server logger: building the HTTP client: {err}");
            return;
        }
    };
    while let Some(event) = queue.recv().await {
        let mut request = client
            .post(&logger.url)
            .header("ce-specversion", "1.0")
            .header("ce-id", &event.id)
            .header("ce-type", event.kind)
            .header("ce-source", &source)
            .header("ce-endpoint", &logger.endpoint)
            .header("ce-inferenceservicename", &logger.model)
            .header(header::CONTENT_TYPE, "application/json")
            .body(event.body);
        if let Some(namespace) = &namespace {
            request = request.header("ce-namespace", namespace);
        }
        let delivered = matches!(request.send().await, Ok(response) if response.status().is_success());
        let Some(shared) = shared.upgrade() else { return };
        let counter = if delivered { &shared.log_sent } else { &shared.log_lost };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        *lock(&self.behaviour)
    }
}

/// Locks a mutex, also after a panic elsewhere poisoned it (the data stays consistent: every critical section is a
/// plain read or write).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running model server on the current tokio runtime. Dropping it shuts the server down.
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ModelServer {
    /// Binds 127.0.0.1 (the configured port, or a free one) and serves on the current tokio runtime. Fails when the
    /// configuration is out of range or the port is taken.
    pub async fn spawn(config: ModelServerConfig) -> Result<Self, Error> {
        config
            .behaviour
            .validate()
            .map_err(|hint| Error::Missing { what: "a valid model server behaviour".into(), hint })?;
        if config.classes < 2 {
            return Err(Error::Missing {
                what: "a valid number of classes".into(),
                hint: format!("a model server needs at least 2 classes, not {}", config.classes),
            });
        }
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await.map_err(|source| Error::Io {
                context: format!("binding the model server {} to 127.0.0.1:{}", config.version, config.port),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            context: format!("reading the address of model server {}", config.version),
            source,
        })?;
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let (log, log_queue) = match &config.logger {
            Some(_) => {
                let (sender, receiver) = mpsc::channel(LOG_QUEUE);
                (Some(sender), Some(receiver))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&config.version, config.namespace.as_deref(), config.llm_metrics),
            version: config.version,
            label_delay: config.label_delay,
            classes: config.classes,
            behaviour: Mutex::new(config.behaviour),
            rng: Mutex::new(rng),
            answered: AtomicU64::new(0),
            log,
            log_lost: AtomicU64::new(0),
            log_sent: AtomicU64::new(0),
        });
        if let (Some(logger), Some(queue)) = (config.logger, log_queue) {
            let source = format!("http://{addr}/");
            tokio::spawn(run_logger(logger, config.namespace.clone(), source, queue, Arc::downgrade(&shared)));
        }
        let router = Router::new()
            .route("/predict", post(predict))
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/admin/behaviour", get(get_behaviour).put(put_behaviour))
            .with_state(shared.clone());
        let (shutdown, mut stopped) = watch::channel(false);
        let version = shared.version.clone();
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(signal).await {
                eprintln!("model server {version} on {addr} stopped: {err}");
            }
        });
        Ok(Self { addr, shared, shutdown, task: Some(task) })
    }

    /// The address it listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The version it plays.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour()
    }

    /// Replaces the behaviour for all requests that start from now on.
    ///
    /// # Panics
    /// When a probability is outside `[0, 1]`, sigma is negative, or the median is over 30 s: a bug in the test.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        if let Err(message) = behaviour.validate() {
            panic!("ModelServer::set_behaviour: {message}");
        }
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// Sets the probability that a labelled prediction is correct (panics outside `[0, 1]`).
    pub fn set_accuracy(&self, accuracy: f64) {
        self.set_behaviour(Behaviour { accuracy, ..self.behaviour() });
    }

    /// Sets the probability of an HTTP 500 (panics outside `[0, 1]`).
    pub fn set_error_rate(&self, error_rate: f64) {
        self.set_behaviour(Behaviour { error_rate, ..self.behaviour() });
    }

    /// Sets the latency distribution.
    pub fn set_latency(&self, median: Duration, sigma: f64) {
        self.set_behaviour(Behaviour { latency: Latency { median, sigma }, ..self.behaviour() });
    }

    /// What it has answered so far.
    pub fn served(&self) -> ServedCounts {
        let metrics = &self.shared.metrics;
        let errors = metrics.requests.get_or_create(&code_label(StatusCode::INTERNAL_SERVER_ERROR)).get();
        ServedCounts {
            requests: self.shared.answered.load(Ordering::Relaxed),
            errors,
            labelled: metrics.labelled.get(),
            correct: metrics.correct.get(),
        }
    }

    /// Logged events delivered to the logger URL, and those lost (queue full, or not accepted).
    pub fn logged(&self) -> (u64, u64) {
        (self.shared.log_sent.load(Ordering::Relaxed), self.shared.log_lost.load(Ordering::Relaxed))
    }

    /// The `/metrics` text, as Prometheus would scrape it.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode().unwrap_or_default()
    }

    /// Stops accepting requests, lets the ones in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        // Graceful: open keep-alive connections (Prometheus') are closed too, so the server is really gone.
        let _ = self.shutdown.send(true);
    }
}

/// What one request will get, drawn up front so the lock is not held while sleeping.
struct Draw {
    latency: Duration,
    /// LLM timings in seconds: time to first token, then one inter-token gap per further token.
    time_to_first_token: f64,
    inter_token: Vec<f64>,
    fail: bool,
    drop: bool,
    disagree: bool,
    correct: bool,
    wrong_offset: u32,
}

/// Draws one request's fate. Whether a labelled prediction is right (and which wrong class it gives) depends only on
/// the request id, so two servers with the same behaviour answer the same request alike, as two copies of one model
/// would; latency, failures, drops and disagreement are drawn per server.
fn draw(shared: &Shared, id: &str) -> Draw {
    let behaviour = shared.behaviour();
    let mut rng = lock(&shared.rng);
    let latency = Duration::from_secs_f64(sample(&mut rng, behaviour.latency));
    let (time_to_first_token, inter_token) = if shared.metrics.llm.is_some() {
        let first = sample(&mut rng, behaviour.time_to_first_token);
        let gaps = (1..behaviour.output_tokens).map(|_| sample(&mut rng, behaviour.inter_token)).collect();
        (first, gaps)
    } else {
        (0.0, Vec::new())
    };
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(id, &mut hasher);
    let mut model = StdRng::seed_from_u64(std::hash::Hasher::finish(&hasher));
    Draw {
        latency,
        time_to_first_token,
        inter_token,
        fail: rng.gen_bool(behaviour.error_rate),
        drop: rng.gen_bool(behaviour.drop),
        disagree: rng.gen_bool(behaviour.disagree),
        correct: model.gen_bool(behaviour.accuracy),
        wrong_offset: model.gen_range(1..shared.classes),
    }
}

/// One draw from a latency distribution, in seconds (at most [`MAX_LATENCY`]).
fn sample(rng: &mut StdRng, latency: Latency) -> f64 {
    if latency.sigma == 0.0 {
        return latency.median.as_secs_f64();
    }
    let mu = latency.median.as_secs_f64().max(1e-9).ln();
    match LogNormal::new(mu, latency.sigma) {
        Ok(distribution) => distribution.sample(rng).min(MAX_LATENCY.as_secs_f64()),
        Err(_) => latency.median.as_secs_f64(),
    }
}

/// The request id: the caller's `x-request-id` when it is a sensible one, otherwise a new one.
fn request_id(headers: &HeaderMap, shared: &Shared) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", lock(&shared.rng).r#gen::<u64>()))
}

async fn predict(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let id = request_id(&headers, &shared);
    shared.log(&id, REQUEST_EVENT, body.clone());
    let request: Result<PredictRequest, String> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(PredictRequest::default())
    } else {
        serde_json::from_slice(&body).map_err(|err| format!("the body is not a prediction request: {err}"))
    };
    let request = request.and_then(|request| match request.label {
        Some(label) if label >= shared.classes => {
            Err(format!("label {label} is out of range: this model has classes 0..{}", shared.classes))
        }
        _ => Ok(request),
    });
    let draw = draw(&shared, &id);
    // Only answered predictions are logged as responses: an error or a dropped request leaves its request unpaired.
    let (code, response) = match request {
        Err(message) => (StatusCode::BAD_REQUEST, error_body(StatusCode::BAD_REQUEST, message)),
        Ok(request) => {
            tokio::time::sleep(draw.latency).await;
            if draw.drop {
                let message = "dropped (configured drop share); no response was logged".to_string();
                (StatusCode::SERVICE_UNAVAILABLE, error_body(StatusCode::SERVICE_UNAVAILABLE, message))
            } else if draw.fail {
                let message = "injected failure (configured error rate)".to_string();
                (StatusCode::INTERNAL_SERVER_ERROR, error_body(StatusCode::INTERNAL_SERVER_ERROR, message))
            } else {
                let mut prediction = match request.label {
                    Some(label) if draw.correct => label,
                    Some(label) => (label + draw.wrong_offset) % shared.classes,
                    None => draw.wrong_offset,
                };
                if draw.disagree {
                    prediction = (prediction + 1) % shared.classes;
                }
                let correct = request.label.map(|label| label == prediction);
                if let Some(correct) = correct {
                    let (labelled, right) = (shared.metrics.labelled.clone(), shared.metrics.correct.clone());
                    let count = move || {
                        labelled.inc();
                        if correct {
                            right.inc();
                        }
                    };
                    if shared.label_delay.is_zero() {
                        count();
                    } else {
                        // The label arrives later: the outcome is counted then (also after the server stopped).
                        let delay = shared.label_delay;
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            count();
                        });
                    }
                }
                let answer = PredictResponse { version: shared.version.clone(), prediction, correct };
                let text = serde_json::to_vec(&answer).unwrap_or_default();
                shared.log(&id, RESPONSE_EVENT, Bytes::from(text.clone()));
                (StatusCode::OK, ([(header::CONTENT_TYPE, "application/json")], text).into_response())
            }
        }
    };
    shared.metrics.requests.get_or_create(&code_label(code)).inc();
    if let Some(llm) = &shared.metrics.llm {
        llm.http_requests.get_or_create(&http_label(code.is_success())).inc();
        if code.is_success() {
            llm.time_to_first_token.observe(draw.time_to_first_token);
            for gap in &draw.inter_token {
                llm.inter_token.observe(*gap);
            }
            llm.e2e.observe(draw.time_to_first_token + draw.inter_token.iter().sum::<f64>());
        }
    }
    shared.metrics.duration.observe(started.elapsed().as_secs_f64());
    shared.answered.fetch_add(1, Ordering::Relaxed);
    response
}

fn error_body(code: StatusCode, message: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {err}")).into_response(),
    }
}

/// `GET /admin/behaviour`: the current behaviour as JSON (latency median in seconds).
async fn get_behaviour(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.behaviour()).into_response()
}

/// A partial update of the behaviour for `PUT /admin/behaviour`, e.g. `{"accuracy": 0.85}`.
#[derive(Deserialize)]
struct BehaviourUpdate {
    accuracy: Option<f64>,
    error_rate: Option<f64>,
    latency_median_seconds: Option<f64>,
    latency_sigma: Option<f64>,
}

/// `PUT /admin/behaviour`: changes the behaviour (for the demo: make a canary regress with `curl`).
async fn put_behaviour(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let update: BehaviourUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(err) => return error_body(StatusCode::BAD_REQUEST, format!("expected a behaviour update: {err}")),
    };
    let mut behaviour = shared.behaviour();
    behaviour.accuracy = update.accuracy.unwrap_or(behaviour.accuracy);
    behaviour.error_rate = update.error_rate.unwrap_or(behaviour.error_rate);
    behaviour.latency.sigma = update.latency_sigma.unwrap_or(behaviour.latency.sigma);
    if let Some(seconds) = update.latency_median_seconds {
        match Duration::try_from_secs_f64(seconds) {
            Ok(median) => behaviour.latency.median = median,
            Err(err) => return error_body(StatusCode::BAD_REQUEST, format!("latency_median_seconds: {err}")),
        }
    }
    if let Err(message) = behaviour.validate() {
        return error_body(StatusCode::BAD_REQUEST, message);
    }
    *lock(&shared.behaviour) = behaviour;
    axum::Json(behaviour).into_response()
}

/// Serialises a [`Duration`] as fractional seconds.
mod duration_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_behaviour_is_valid_and_out_of_range_probabilities_are_not() {
        assert!(Behaviour::default().validate().is_ok());
        assert!(Behaviour { accuracy: 1.2, ..Behaviour::default() }.validate().is_err());
        assert!(Behaviour { error_rate: -0.1, ..Behaviour::default() }.validate().is_err());
        assert!(
            Behaviour { latency: Latency { median: Duration::ZERO, sigma: -1.0 }, ..Behaviour::default() }
                .validate()
                .is_err()
        );
    }

    #[test]
    fn an_llm_server_exports_the_vllm_families_with_version_and_namespace() {
        let text = Metrics::new("v7", Some("team-a"), true).encode().unwrap();
        for line in [
            r#"vllm:time_to_first_token_seconds_count{version="v7",namespace="team-a"} 0"#,
            r#"vllm:inter_token_latency_seconds_bucket{version="v7",namespace="team-a",le="0.01"} 0"#,
            r#"vllm:e2e_request_latency_seconds_count{version="v7",namespace="team-a"} 0"#,
            r#"http_requests_total{version="v7",namespace="team-a",handler="/v1/completions",method="POST",status="5xx"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let plain = Metrics::new("v7", Some("team-a"), false).encode().unwrap();
        assert!(!plain.contains("vllm:"), "only LLM servers export them");
    }

    #[test]
    fn metrics_carry_version_and_namespace_and_both_codes_from_the_start() {
        let text = Metrics::new("v7", Some("team-a"), false).encode().unwrap();
        for line in [
            r#"model_requests_total{version="v7",namespace="team-a",code="200"} 0"#,
            r#"model_requests_total{version="v7",namespace="team-a",code="500"} 0"#,
            r#"model_predictions_labelled_total{version="v7",namespace="team-a"} 0"#,
            r#"model_predictions_correct_total{version="v7",namespace="team-a"} 0"#,
            r#"model_request_duration_seconds_count{version="v7",namespace="team-a"} 0"#,
            r#"model_request_duration_seconds_bucket{version="v7",namespace="team-a",le="0.01"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}

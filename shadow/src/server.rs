//! The HTTP side: receives CloudEvents, feeds the pairer, serves `/metrics` and `/healthz`.
//!
//! Bodies are read with a hard limit before anything is parsed, parsing happens outside the lock, and the lock
//! around the pairer is held only for a map lookup and a few counter adds, so one instance keeps up with thousands
//! of pairs per second. A background sweep expires waiting responses even when no events arrive.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::event::{DEFAULT_CANDIDATE_ENDPOINTS, EventParser, InvalidEvent, InvalidReason};
use crate::metrics::{MetricFamilies, Recorder};
use crate::pairer::{Observed, Pairer, PairerConfig};
use crate::prediction::{Compare, PredictionPath};

/// Everything a [`ShadowServer`] needs; `Default` listens on a free loopback port with the documented defaults.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `ce-endpoint` values that mean the candidate logged the event.
    pub candidate_endpoints: Vec<String>,
    /// Where the prediction is in a response body.
    pub prediction_path: PredictionPath,
    /// How two predictions are judged equal.
    pub compare: Compare,
    /// Most unpaired responses held in memory.
    pub max_pending: usize,
    /// How long a response waits for its partner.
    pub pair_timeout: Duration,
    /// Most distinct (namespace, model) series.
    pub max_models: usize,
    /// Largest accepted event body in bytes.
    pub max_event_bytes: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        let pairing = PairerConfig::default();
        ShadowConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            candidate_endpoints: DEFAULT_CANDIDATE_ENDPOINTS.iter().map(|s| s.to_string()).collect(),
            prediction_path: PredictionPath::Auto,
            compare: pairing.compare,
            max_pending: pairing.max_pending,
            pair_timeout: pairing.pair_timeout,
            max_models: pairing.max_models,
            max_event_bytes: 1024 * 1024,
        }
    }
}

impl ShadowConfig {
    /// Refuses settings that would make the server useless or unbounded.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: &str| Err(Error::Config(message.to_string()));
        if self.max_pending == 0 {
            return invalid("--max-pending must be at least 1");
        }
        if self.max_models == 0 {
            return invalid("--max-models must be at least 1");
        }
        if self.max_event_bytes == 0 {
            return invalid("--max-event-bytes must be at least 1");
        }
        if self.pair_timeout.is_zero() {
            return invalid("--pair-timeout must be longer than 0s");
        }
        if let Compare::Numeric { tolerance, .. } = self.compare
            && !(tolerance.is_finite() && tolerance >= 0.0)
        {
            return invalid("--tolerance must be a finite number >= 0");
        }
        Ok(())
    }

    fn pairer_config(&self) -> PairerConfig {
        PairerConfig {
            max_pending: self.max_pending,
            pair_timeout: self.pair_timeout,
            max_models: self.max_models,
            compare: self.compare,
        }
    }
}

/// Pairer and its counter handles, changed together under one lock.
struct Core {
    pairer: Pairer,
    recorder: Recorder,
}

struct Shared {
    parser: EventParser,
    core: Mutex<Core>,
    families: MetricFamilies,
    registry: Registry,
}

impl Shared {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters for counting,
        // so keep serving rather than failing every later event.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running rampart-shadow HTTP server.
#[derive(Debug)]
pub struct ShadowServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serve: JoinHandle<()>,
    sweep: JoinHandle<()>,
}

impl ShadowServer {
    /// Binds `config.listen` and serves until [`ShadowServer::shutdown`].
    pub async fn spawn(config: ShadowConfig) -> Result<ShadowServer, Error> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen).await.map_err(|source| Error::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;

        let mut registry = Registry::default();
        let families = MetricFamilies::register(&mut registry);
        let shared = Arc::new(Shared {
            parser: EventParser::new(
                config.candidate_endpoints.clone(),
                config.prediction_path.clone(),
                config.compare,
            ),
            core: Mutex::new(Core {
                pairer: Pairer::new(config.pairer_config()),
                recorder: Recorder::new(families.clone()),
            }),
            families,
            registry,
        });

        let router = Router::new()
            .route("/", post(receive))
            .route("/events", post(receive))
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(config.max_event_bytes))
            .with_state(Arc::clone(&shared));

        let (stop, stopped) = oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %err, "shadow event server stopped");
            }
        });
        let sweep = tokio::spawn(sweep(shared, sweep_interval(config.pair_timeout)));
        tracing::info!(%addr, "rampart-shadow listening");
        Ok(ShadowServer { addr, stop, serve, sweep })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`; an unspecified bind address is reached through loopback.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting, lets in-flight requests finish, and stops the sweep.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.sweep.abort();
        if let Err(err) = self.serve.await
            && err.is_panic()
        {
            tracing::error!(error = %err, "shadow event server panicked");
        }
        let _ = self.sweep.await;
    }
}

/// Sweeps often enough that a response is counted unpaired at most ~10% of the timeout late (and at least every
/// 5 s, at most every 10 ms).
fn sweep_interval(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

async fn sweep(shared: Arc<Shared>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut core = shared.core();
        let Core { pairer, recorder } = &mut *core;
        let dropped = pairer.expire(Instant::now());
        recorder.record_dropped(pairer, &dropped);
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            shared.families.invalid(InvalidReason::TooLarge);
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &InvalidEvent::new(InvalidReason::TooLarge, "event body is larger than --max-event-bytes"),
            );
        }
        Err(rejection) => return rejection.into_response(),
    };
    let event = match shared.parser.parse(&headers, &body) {
        Ok(event) => event,
        Err(invalid) => {
            shared.families.invalid(invalid.reason);
            tracing::debug!(reason = invalid.reason.as_str(), detail = %invalid.detail, "refused event");
            return refuse(StatusCode::BAD_REQUEST, &invalid);
        }
    };
    let (side, kind) = (event.side, event.kind);
    let outcome = {
        let mut core = shared.core();
        let Core { pairer, recorder } = &mut *core;
        let outcome = pairer.observe(event, Instant::now());
        recorder.record(pairer, side, kind, &outcome);
        outcome
    };
    match outcome.result {
        Observed::Invalid(reason) => {
            let detail = match reason {
                InvalidReason::Duplicate => "a response from this side for this id is already waiting for its partner",
                InvalidReason::NoPrediction => "no prediction found in the response at --prediction-path",
                InvalidReason::TooManyModels => "too many distinct (namespace, model) series; raise --max-models",
                _ => "event refused",
            };
            tracing::debug!(reason = reason.as_str(), "refused event");
            refuse(StatusCode::BAD_REQUEST, &InvalidEvent::new(reason, detail))
        }
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

fn refuse(status: StatusCode, invalid: &InvalidEvent) -> Response {
    let body = serde_json::json!({ "reason": invalid.reason.as_str(), "error": invalid.detail }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

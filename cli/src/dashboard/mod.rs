//! `rampart dashboard`: a local web app over the user's own kubeconfig (so their RBAC applies) and, when given, the
//! registry. Pages: rollouts across namespaces, one rollout (steps, checks, per-look analysis charts), one model
//! (versions, aliases, rollouts and rollbacks, hash-chain status). Everything it serves is built into the binary; the
//! browser gets live updates as server-sent events. Promote, abort and retry are offered only when a
//! SelfSubjectAccessReview says the user may patch the rollout, and the API server checks again when they are used.

mod assets;
mod data;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde_json::{Value, json};

use crate::args::{DashboardArgs, GlobalArgs};
use crate::cluster::Cluster;
use crate::database::Database;
use crate::error::CliError;
use crate::intent::Intent;

/// The header every state-changing request must carry. A page on another site cannot send it without a CORS
/// preflight, which the dashboard never answers, so buttons work only from the dashboard's own pages.
pub const INTENT_HEADER: &str = "x-rampart-dashboard";

/// What every request handler shares.
pub struct Dashboard {
    pub cluster: Cluster,
    pub database: Option<Database>,
    pub refresh: Duration,
    /// Host headers accepted (the bound address, and `localhost:PORT` for loopback), against DNS rebinding.
    allowed_hosts: Vec<String>,
}

pub async fn run(args: &DashboardArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    if !args.refresh.is_finite() || args.refresh < 0.1 || args.refresh > 3600.0 {
        return Err(CliError::input(
            format!("--refresh {} is out of range", args.refresh),
            Some("give seconds between 0.1 and 3600, e.g. --refresh 2".into()),
        ));
    }
    let address: SocketAddr = args.address.parse().map_err(|err| {
        CliError::input(
            format!("--address {} is not HOST:PORT: {err}", args.address),
            Some("for example --address 127.0.0.1:3100 (port 0 picks a free one)".into()),
        )
    })?;
    let cluster = Cluster::connect(global).await?;
    let database = match global.database_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => Some(Database::connect(global).await?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|err| {
        CliError::input(
            format!("cannot listen on {address}: {err}"),
            Some("pick another port with --address 127.0.0.1:PORT".into()),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|err| CliError::input(format!("cannot read the listening address: {err}"), None))?;
    let mut allowed_hosts = vec![local.to_string()];
    if local.ip().is_loopback() {
        allowed_hosts.push(format!("localhost:{}", local.port()));
    }
    if local.ip().is_unspecified() {
        allowed_hosts.push(format!("*:{}", local.port()));
    }
    if !local.ip().is_loopback() {
        eprintln!(
            "rampart dashboard: warning: listening on {local}, not loopback: anyone who reaches it acts with your \
             Kubernetes credentials"
        );
    }
    let registry_note = match &database {
        Some(database) => format!("registry {}", database.location),
        None => "no registry (pass --database-url for model pages and per-look charts)".into(),
    };
    let state =
        Arc::new(Dashboard { cluster, database, refresh: Duration::from_secs_f64(args.refresh), allowed_hosts });
    println!("rampart dashboard: http://{local}/ (cluster {}, {registry_note}); Ctrl-C stops it", state.cluster.server);

    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|err| CliError::input(format!("the dashboard server stopped: {err}"), None))?;
    Ok(ExitCode::SUCCESS)
}

fn router(state: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/overview", get(overview))
        .route("/api/events", get(events))
        .route("/api/rollouts/{namespace}/{name}", get(rollout))
        .route("/api/rollouts/{namespace}/{name}/{intent}", post(intent))
        .route("/api/models/{model}", get(model))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
}

/// Refuses requests whose Host is not the dashboard's own address (a DNS-rebinding page would send its own name).
async fn check_host(State(state): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
    let allowed = state.allowed_hosts.iter().any(|allowed| match allowed.strip_prefix("*:") {
        // Bound to every interface (the user was warned): any name, on the dashboard's port.
        Some(port) => host.rsplit_once(':').is_some_and(|(_, host_port)| host_port == port),
        None => allowed == host,
    });
    if allowed {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "rampart dashboard: unexpected Host header; open the address it printed")
            .into_response()
    }
}

/// A JSON error body: what went wrong and what to do.
fn error_response(status: StatusCode, err: &CliError) -> Response {
    (status, axum::Json(json!({"error": err.to_string(), "hint": err.hint()}))).into_response()
}

fn status_for(err: &CliError) -> StatusCode {
    match err {
        CliError::Input { .. } | CliError::Failed { .. } => StatusCode::CONFLICT,
        CliError::Kubernetes { message, .. } if message.contains("not found") => StatusCode::NOT_FOUND,
        CliError::Kubernetes { message, .. } if message.starts_with("forbidden") => StatusCode::FORBIDDEN,
        CliError::Kubernetes { .. } | CliError::Registry { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn json_or_error(result: Result<Value, CliError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(err) => error_response(status_for(&err), &err),
    }
}

async fn overview(State(state): State<Arc<Dashboard>>) -> Response {
    json_or_error(data::overview(&state).await)
}

async fn rollout(State(state): State<Arc<Dashboard>>, Path((namespace, name)): Path<(String, String)>) -> Response {
    json_or_error(data::rollout(&state, &namespace, &name).await)
}

async fn model(State(state): State<Arc<Dashboard>>, Path(model): Path<String>) -> Response {
    json_or_error(data::model(&state, &model).await)
}

async fn intent(
    State(state): State<Arc<Dashboard>>,
    Path((namespace, name, intent)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.get(INTENT_HEADER).and_then(|value| value.to_str().ok()) != Some("1") {
        let err = CliError::input("this request did not come from the dashboard's own page", None);
        return error_response(StatusCode::FORBIDDEN, &err);
    }
    let intent = match intent.as_str() {
        "promote" => Intent::Promote,
        "abort" => Intent::Abort,
        "retry" => Intent::Retry,
        other => {
            let err = CliError::input(format!("unknown action `{other}`"), Some("promote, abort or retry".into()));
            return error_response(StatusCode::NOT_FOUND, &err);
        }
    };
    let cluster = Cluster {
        client: state.cluster.client.clone(),
        namespace: namespace.clone(),
        server: state.cluster.server.clone(),
    };
    match crate::intent::request(intent, &cluster, &name).await {
        Ok(message) => axum::Json(json!({"message": message})).into_response(),
        Err(err) => error_response(status_for(&err), &err),
    }
}

/// Server-sent events: the overview (every rollout's phase, weight and resourceVersion) each time it changes, checked
/// every `--refresh` seconds. The list page renders it as it comes; the other pages refetch when their rollout's
/// resourceVersion (or anything, for a model) changes.
async fn events(
    State(state): State<Arc<Dashboard>>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = futures::stream::unfold((state, None::<String>), |(state, mut last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(state.refresh).await;
            }
            let (name, body) = match data::overview(&state).await {
                Ok(value) => ("overview", value.to_string()),
                Err(err) => ("problem", json!({"error": err.to_string(), "hint": err.hint()}).to_string()),
            };
            if last.as_deref() != Some(body.as_str()) {
                let event = Event::default().event(name).data(body.clone());
                return Some((Ok(event), (state, Some(body))));
            }
            last = Some(body);
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

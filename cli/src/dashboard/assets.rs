//! The dashboard's page, script, style sheet and the vendored Chart.js, all compiled into the binary (the build
//! script vendors Chart.js from npm), so `rampart dashboard` fetches nothing at run time.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const CHART_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/chart.umd.min.js"));

/// Headers on every asset: no caching across binary versions, and a policy that allows only the dashboard's own
/// scripts, styles and API.
fn respond(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => respond("text/javascript; charset=utf-8", APP_JS),
        "app.css" => respond("text/css; charset=utf-8", APP_CSS),
        "chart.umd.min.js" => respond("text/javascript; charset=utf-8", CHART_JS),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

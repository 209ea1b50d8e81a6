//! Reads one CloudEvent of KServe's inference logger (binary or structured HTTP mode) into a [`ShadowEvent`].
//!
//! Everything here is untrusted network input: every attribute is checked, label values are bounded and kept free of
//! characters that would break the Prometheus text format, and each refusal names an [`InvalidReason`] so that it is
//! counted and the sender is told what to fix. Parsing is a pure function of headers and body (no I/O).

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use crate::prediction::{Compare, Prediction, PredictionPath};

/// CloudEvents `type` of a logged inference request.
pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
/// CloudEvents `type` of a logged inference response.
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";
/// `ce-endpoint` values that mean "the candidate logged this" unless configured otherwise.
pub const DEFAULT_CANDIDATE_ENDPOINTS: [&str; 3] = ["canary", "candidate", "shadow"];
/// Longest label value accepted (the Kubernetes name limit).
pub const MAX_LABEL_LEN: usize = 253;
/// Longest request id accepted; ids are held in memory while a response waits for its partner.
pub const MAX_ID_LEN: usize = 512;

/// Which deployment logged an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The model serving users (gets the live request).
    Baseline,
    /// The model receiving the mirrored copy.
    Candidate,
}

impl Side {
    /// The `side` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Candidate => "candidate",
        }
    }

    /// The other side of a pair.
    pub fn other(self) -> Side {
        match self {
            Side::Baseline => Side::Candidate,
            Side::Candidate => Side::Baseline,
        }
    }
}

/// Whether the event logs the request or the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Request,
    Response,
}

impl EventType {
    /// The `type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Request => "request",
            EventType::Response => "response",
        }
    }
}

/// One logged request or response, reduced to what pairing needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowEvent {
    /// The request id (`ce-id`): equal for request and response, baseline and mirrored copy.
    pub id: String,
    /// `ce-namespace`, empty when absent.
    pub namespace: String,
    /// `ce-inferenceservicename` or `ce-model`.
    pub model: String,
    pub side: Side,
    pub kind: EventType,
    /// For responses: the extracted prediction, `None` when the body has none. Always `None` for requests.
    pub prediction: Option<Prediction>,
}

/// Why an event was refused; the `reason` label of `rampart_shadow_invalid_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// The body is larger than `--max-event-bytes`.
    TooLarge,
    /// Neither binary mode (`ce-specversion` header) nor structured mode (`application/cloudevents+json`).
    NotCloudEvent,
    /// The body (or a structured envelope) is not valid JSON.
    MalformedJson,
    /// A required attribute (specversion, id, type, source, model) is missing.
    MissingAttribute,
    /// An attribute is present but unusable (not text, too long, unprintable, bad specversion).
    InvalidAttribute,
    /// `type` is neither the inference request nor the inference response type.
    UnknownType,
    /// `data_base64` or batch mode: only JSON data is understood.
    UnsupportedEncoding,
    /// Accepting the event would exceed `--max-models` distinct (namespace, model) series.
    TooManyModels,
    /// A second response from the same side for an id that is still waiting for its partner.
    Duplicate,
    /// A response body without a prediction at the configured path.
    NoPrediction,
}

impl InvalidReason {
    /// Every reason, so each series exists (at 0) from the start.
    pub const ALL: [InvalidReason; 10] = [
        InvalidReason::TooLarge,
        InvalidReason::NotCloudEvent,
        InvalidReason::MalformedJson,
        InvalidReason::MissingAttribute,
        InvalidReason::InvalidAttribute,
        InvalidReason::UnknownType,
        InvalidReason::UnsupportedEncoding,
        InvalidReason::TooManyModels,
        InvalidReason::Duplicate,
        InvalidReason::NoPrediction,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::TooLarge => "too_large",
            InvalidReason::NotCloudEvent => "not_cloudevent",
            InvalidReason::MalformedJson => "malformed_json",
            InvalidReason::MissingAttribute => "missing_attribute",
            InvalidReason::InvalidAttribute => "invalid_attribute",
            InvalidReason::UnknownType => "unknown_type",
            InvalidReason::UnsupportedEncoding => "unsupported_encoding",
            InvalidReason::TooManyModels => "too_many_models",
            InvalidReason::Duplicate => "duplicate",
            InvalidReason::NoPrediction => "no_prediction",
        }
    }
}

/// A refused event: the counted reason and a sentence for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct InvalidEvent {
    pub reason: InvalidReason,
    pub detail: String,
}

impl InvalidEvent {
    pub fn new(reason: InvalidReason, detail: impl Into<String>) -> Self {
        InvalidEvent { reason, detail: detail.into() }
    }
}

/// Parses events with the configured side mapping and prediction extraction.
#[derive(Debug, Clone)]
pub struct EventParser {
    candidate_endpoints: Vec<String>,
    path: PredictionPath,
    compare: Compare,
}

impl Default for EventParser {
    fn default() -> Self {
        EventParser::new(
            DEFAULT_CANDIDATE_ENDPOINTS.iter().map(|s| s.to_string()).collect(),
            PredictionPath::Auto,
            Compare::Top1,
        )
    }
}

impl EventParser {
    pub fn new(candidate_endpoints: Vec<String>, path: PredictionPath, compare: Compare) -> Self {
        EventParser { candidate_endpoints, path, compare }
    }

    /// Which side an `endpoint` extension value means; absent or unknown means baseline.
    pub fn side_of(&self, endpoint: Option<&str>) -> Side {
        match endpoint {
            Some(name) if self.candidate_endpoints.iter().any(|c| c == name) => Side::Candidate,
            _ => Side::Baseline,
        }
    }

    /// Parses an HTTP request: structured mode when the content type says so, binary mode otherwise.
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<ShadowEvent, InvalidEvent> {
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media_type.as_str() {
            "application/cloudevents+json" => self.parse_structured(body),
            "application/cloudevents-batch+json" => Err(InvalidEvent::new(
                InvalidReason::UnsupportedEncoding,
                "batched CloudEvents are not supported; send one event per request",
            )),
            _ => self.parse_binary(headers, body),
        }
    }

    /// Binary mode: attributes in `ce-*` headers, the body is the data.
    pub fn parse_binary(&self, headers: &HeaderMap, body: &[u8]) -> Result<ShadowEvent, InvalidEvent> {
        let header = |name: &str| -> Result<Option<&str>, InvalidEvent> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => value.to_str().map(Some).map_err(|_| {
                    InvalidEvent::new(InvalidReason::InvalidAttribute, format!("header {name} is not printable ASCII"))
                }),
            }
        };
        let Some(specversion) = header("ce-specversion")? else {
            return Err(InvalidEvent::new(
                InvalidReason::NotCloudEvent,
                "not a CloudEvent: send ce-specversion, ce-id, ce-type and ce-source headers (binary mode) or \
                 content-type application/cloudevents+json (structured mode)",
            ));
        };
        // Header values are percent-encoded by senders (CloudEvents HTTP binding, 3.1.3.2), e.g. the SDKs.
        let decoded = |name: &str| -> Result<Option<String>, InvalidEvent> {
            header(name)?.map(|value| percent_decode(name, value)).transpose()
        };
        let (id, kind, source) = (decoded("ce-id")?, decoded("ce-type")?, decoded("ce-source")?);
        let endpoint = decoded("ce-endpoint")?;
        let model = match decoded("ce-inferenceservicename")? {
            Some(name) => Some(name),
            None => decoded("ce-model")?,
        };
        let namespace = decoded("ce-namespace")?;
        let attributes = Attributes {
            specversion,
            id: id.as_deref(),
            kind: kind.as_deref(),
            source: source.as_deref(),
            endpoint: endpoint.as_deref(),
            model: model.as_deref(),
            namespace: namespace.as_deref(),
        };
        let mut event = self.event_from(attributes, "ce-")?;
        if event.kind == EventType::Response {
            let data: Value = serde_json::from_slice(body).map_err(|err| {
                InvalidEvent::new(InvalidReason::MalformedJson, format!("response body is not JSON: {err}"))
            })?;
            event.prediction = Prediction::extract(&data, &self.path, self.compare);
        }
        Ok(event)
    }

    /// Structured mode: one JSON object holding the attributes and `data`.
    pub fn parse_structured(&self, body: &[u8]) -> Result<ShadowEvent, InvalidEvent> {
        let envelope: Value = serde_json::from_slice(body).map_err(|err| {
            InvalidEvent::new(InvalidReason::MalformedJson, format!("structured CloudEvent is not JSON: {err}"))
        })?;
        let Value::Object(fields) = envelope else {
            return Err(InvalidEvent::new(InvalidReason::MalformedJson, "structured CloudEvent must be a JSON object"));
        };
        if fields.contains_key("data_base64") {
            return Err(InvalidEvent::new(
                InvalidReason::UnsupportedEncoding,
                "data_base64 is not supported; put the JSON response in data",
            ));
        }
        let text = |name: &str| text_field(&fields, name);
        let Some(specversion) = text("specversion")? else {
            return Err(InvalidEvent::new(InvalidReason::MissingAttribute, "structured CloudEvent has no specversion"));
        };
        let attributes = Attributes {
            specversion,
            id: text("id")?,
            kind: text("type")?,
            source: text("source")?,
            endpoint: text("endpoint")?,
            model: match text("inferenceservicename")? {
                Some(name) => Some(name),
                None => text("model")?,
            },
            namespace: text("namespace")?,
        };
        let mut event = self.event_from(attributes, "")?;
        if event.kind == EventType::Response {
            let data = fields.get("data").unwrap_or(&Value::Null);
            event.prediction = Prediction::extract(data, &self.path, self.compare);
        }
        Ok(event)
    }

    fn event_from(&self, a: Attributes<'_>, prefix: &str) -> Result<ShadowEvent, InvalidEvent> {
        if a.specversion != "1.0" && a.specversion != "0.3" {
            return Err(InvalidEvent::new(
                InvalidReason::InvalidAttribute,
                format!("unsupported {prefix}specversion {:?}; use 1.0", truncated(a.specversion)),
            ));
        }
        let missing = |name: &str| {
            InvalidEvent::new(InvalidReason::MissingAttribute, format!("CloudEvent has no {prefix}{name} attribute"))
        };
        let id = a.id.ok_or_else(|| missing("id"))?;
        let kind = a.kind.ok_or_else(|| missing("type"))?;
        a.source.ok_or_else(|| missing("source"))?;
        let kind = match kind {
            REQUEST_TYPE => EventType::Request,
            RESPONSE_TYPE => EventType::Response,
            other => {
                return Err(InvalidEvent::new(
                    InvalidReason::UnknownType,
                    format!("{prefix}type {:?} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}", truncated(other)),
                ));
            }
        };
        if id.is_empty() || id.len() > MAX_ID_LEN || !printable(id) {
            return Err(InvalidEvent::new(
                InvalidReason::InvalidAttribute,
                format!("{prefix}id must be 1 to {MAX_ID_LEN} printable characters"),
            ));
        }
        let model = a.model.ok_or_else(|| {
            InvalidEvent::new(
                InvalidReason::MissingAttribute,
                format!("CloudEvent names no model: set {prefix}inferenceservicename or {prefix}model"),
            )
        })?;
        let namespace = a.namespace.unwrap_or("");
        for (name, value) in [("model", model), ("namespace", namespace)] {
            check_label(name, value, prefix)?;
        }
        if model.is_empty() {
            return Err(InvalidEvent::new(InvalidReason::MissingAttribute, format!("{prefix}model is empty")));
        }
        Ok(ShadowEvent {
            id: id.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            side: self.side_of(a.endpoint),
            kind,
            prediction: None,
        })
    }
}

/// The attributes both modes provide, borrowed from headers or the envelope.
/// Decodes `%XX` escapes in a binary-mode header value; a malformed escape or a result that is not UTF-8 is an
/// invalid attribute.
fn percent_decode(name: &str, value: &str) -> Result<String, InvalidEvent> {
    if !value.contains('%') {
        return Ok(value.to_string());
    }
    let invalid =
        || InvalidEvent::new(InvalidReason::InvalidAttribute, format!("header {name} has a malformed %-escape"));
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit)).ok_or_else(invalid)?;
            let text = std::str::from_utf8(hex).map_err(|_| invalid())?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        InvalidEvent::new(InvalidReason::InvalidAttribute, format!("header {name} does not decode to UTF-8"))
    })
}

struct Attributes<'a> {
    specversion: &'a str,
    id: Option<&'a str>,
    kind: Option<&'a str>,
    source: Option<&'a str>,
    endpoint: Option<&'a str>,
    model: Option<&'a str>,
    namespace: Option<&'a str>,
}

fn text_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, InvalidEvent> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => {
            Err(InvalidEvent::new(InvalidReason::InvalidAttribute, format!("attribute {name} must be a string")))
        }
    }
}

/// Label values go into the Prometheus text format unescaped, so quotes, backslashes and control characters are
/// refused rather than passed through.
fn check_label(name: &str, value: &str, prefix: &str) -> Result<(), InvalidEvent> {
    if value.len() > MAX_LABEL_LEN || !printable(value) || value.contains(['"', '\\']) {
        return Err(InvalidEvent::new(
            InvalidReason::InvalidAttribute,
            format!(
                "{prefix}{name} must be at most {MAX_LABEL_LEN} printable characters without quotes or backslashes"
            ),
        ));
    }
    Ok(())
}

fn printable(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// At most 64 characters of an attribute, for error messages.
fn truncated(value: &str) -> &str {
    match value.char_indices().nth(64) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_escaped_header_values_are_decoded_and_malformed_ones_refused() {
        assert_eq!(super::percent_decode("ce-id", "req%201%C3%A9").unwrap(), "req 1\u{e9}");
        assert_eq!(super::percent_decode("ce-id", "plain").unwrap(), "plain");
        for bad in ["%zz", "%2", "%+1", "%ff"] {
            assert!(super::percent_decode("ce-id", bad).is_err(), "{bad}");
        }
    }

    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn binary(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn kserve_headers(endpoint: &str, kind: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ce-specversion", "1.0".into()),
            ("ce-id", "req-1".into()),
            ("ce-type", kind.into()),
            ("ce-source", "http://localhost:9081/".into()),
            ("ce-inferenceservicename", "fraud".into()),
            ("ce-namespace", "ml".into()),
            ("ce-endpoint", endpoint.into()),
            ("content-type", "application/json".into()),
        ]
    }

    fn headers_of(pairs: &[(&'static str, String)]) -> HeaderMap {
        binary(&pairs.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
    }

    #[test]
    fn binary_mode_response_from_kserve_logger_is_read() {
        let headers = headers_of(&kserve_headers("canary", RESPONSE_TYPE));
        let event = EventParser::default().parse(&headers, br#"{"predictions": [[0.1, 0.9]]}"#).unwrap();
        assert_eq!(
            event,
            ShadowEvent {
                id: "req-1".into(),
                namespace: "ml".into(),
                model: "fraud".into(),
                side: Side::Candidate,
                kind: EventType::Response,
                prediction: Some(Prediction::Class(1)),
            }
        );
    }

    #[test]
    fn endpoint_default_or_missing_is_baseline_and_candidate_set_is_configurable() {
        let parser = EventParser::default();
        assert_eq!(parser.side_of(Some("default")), Side::Baseline);
        assert_eq!(parser.side_of(None), Side::Baseline);
        assert_eq!(parser.side_of(Some("shadow")), Side::Candidate);
        let custom = EventParser::new(vec!["green".into()], PredictionPath::Auto, Compare::Top1);
        assert_eq!(custom.side_of(Some("green")), Side::Candidate);
        assert_eq!(custom.side_of(Some("canary")), Side::Baseline);
    }

    #[test]
    fn binary_mode_request_body_is_not_parsed() {
        let headers = headers_of(&kserve_headers("default", REQUEST_TYPE));
        let event = EventParser::default().parse(&headers, b"not json at all").unwrap();
        assert_eq!((event.kind, event.side, event.prediction), (EventType::Request, Side::Baseline, None));
    }

    #[test]
    fn binary_mode_errors_name_the_problem() {
        let parser = EventParser::default();
        let err = parser.parse(&HeaderMap::new(), b"{}").unwrap_err();
        assert_eq!(err.reason, InvalidReason::NotCloudEvent);

        let mut pairs = kserve_headers("default", RESPONSE_TYPE);
        pairs.retain(|(k, _)| *k != "ce-id");
        let err = parser.parse(&headers_of(&pairs), b"{}").unwrap_err();
        assert_eq!(err.reason, InvalidReason::MissingAttribute);
        assert!(err.detail.contains("ce-id"), "{}", err.detail);

        let err = parser.parse(&headers_of(&kserve_headers("default", "com.example.other")), b"{}").unwrap_err();
        assert_eq!(err.reason, InvalidReason::UnknownType);

        let err = parser.parse(&headers_of(&kserve_headers("default", RESPONSE_TYPE)), b"{oops").unwrap_err();
        assert_eq!(err.reason, InvalidReason::MalformedJson);

        let mut pairs = kserve_headers("default", RESPONSE_TYPE);
        pairs.retain(|(k, _)| *k != "ce-inferenceservicename");
        let err = parser.parse(&headers_of(&pairs), b"{}").unwrap_err();
        assert_eq!(err.reason, InvalidReason::MissingAttribute);
        pairs.push(("ce-model", "m".into()));
        assert_eq!(parser.parse(&headers_of(&pairs), b"{}").unwrap().model, "m");
    }

    #[test]
    fn label_values_are_bounded_and_free_of_exposition_breaking_characters() {
        let parser = EventParser::default();
        let mut pairs = kserve_headers("default", REQUEST_TYPE);
        pairs.retain(|(k, _)| *k != "ce-namespace");
        assert_eq!(parser.parse(&headers_of(&pairs), b"").unwrap().namespace, "");
        for bad in ["x".repeat(254), "a\"b".to_string(), "a\\b".to_string()] {
            let mut with_bad = pairs.clone();
            with_bad.push(("ce-namespace", bad));
            let err = parser.parse(&headers_of(&with_bad), b"").unwrap_err();
            assert_eq!(err.reason, InvalidReason::InvalidAttribute);
        }
        let mut max_len = pairs.clone();
        max_len.push(("ce-namespace", "x".repeat(253)));
        assert!(parser.parse(&headers_of(&max_len), b"").is_ok());
    }

    #[test]
    fn structured_mode_reads_attributes_and_data_from_one_object() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/cloudevents+json; charset=utf-8"));
        let body = json!({
            "specversion": "1.0", "id": "r-9", "type": RESPONSE_TYPE, "source": "/baseline",
            "model": "iris", "namespace": "ml", "endpoint": "default",
            "datacontenttype": "application/json", "data": {"predictions": ["setosa"]}
        });
        let event = EventParser::default().parse(&headers, body.to_string().as_bytes()).unwrap();
        assert_eq!(event.model, "iris");
        assert_eq!(event.side, Side::Baseline);
        assert_eq!(event.prediction, Some(Prediction::Label("setosa".into())));
    }

    #[test]
    fn structured_mode_errors_name_the_problem() {
        let parser = EventParser::default();
        let err = parser.parse_structured(b"[1, 2]").unwrap_err();
        assert_eq!(err.reason, InvalidReason::MalformedJson);
        let err = parser.parse_structured(b"{\"specversion\": ").unwrap_err();
        assert_eq!(err.reason, InvalidReason::MalformedJson);
        let base64 = json!({"specversion": "1.0", "id": "a", "type": RESPONSE_TYPE, "source": "s",
            "model": "m", "data_base64": "e30="});
        let err = parser.parse_structured(base64.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.reason, InvalidReason::UnsupportedEncoding);
        let numeric_id = json!({"specversion": "1.0", "id": 7, "type": RESPONSE_TYPE, "source": "s", "model": "m"});
        let err = parser.parse_structured(numeric_id.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.reason, InvalidReason::InvalidAttribute);
        let no_source = json!({"specversion": "1.0", "id": "a", "type": RESPONSE_TYPE, "model": "m"});
        let err = parser.parse_structured(no_source.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.reason, InvalidReason::MissingAttribute);
        let old = json!({"specversion": "2.0", "id": "a", "type": RESPONSE_TYPE, "source": "s", "model": "m"});
        let err = parser.parse_structured(old.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.reason, InvalidReason::InvalidAttribute);
    }

    /// Arbitrary bytes and header values must be refused or accepted, never panic.
    #[test]
    fn random_input_never_panics() {
        let parser = EventParser::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\":,.0123456789eE+-truefalsnl \\u00ffpredictions\x00\x7f";
        for round in 0..5000 {
            let len = (next() % 96) as usize;
            let body: Vec<u8> = (0..len)
                .map(
                    |_| if round % 3 == 0 { next() as u8 } else { alphabet[(next() % alphabet.len() as u64) as usize] },
                )
                .collect();
            let _ = parser.parse_structured(&body);
            let headers = headers_of(&kserve_headers("canary", RESPONSE_TYPE));
            let _ = parser.parse(&headers, &body);
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                let _ = Prediction::extract(&value, &PredictionPath::Auto, Compare::Top1);
                let _ = Prediction::extract(
                    &value,
                    &PredictionPath::Auto,
                    Compare::Numeric { tolerance: 0.1, relative: true },
                );
            }
        }
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parser.parse_structured(deep.as_bytes()).unwrap_err().reason, InvalidReason::MalformedJson);
        let headers = headers_of(&kserve_headers("canary", RESPONSE_TYPE));
        assert_eq!(parser.parse(&headers, deep.as_bytes()).unwrap_err().reason, InvalidReason::MalformedJson);
    }

    #[test]
    fn structured_response_without_data_has_no_prediction() {
        let body = json!({"specversion": "1.0", "id": "a", "type": RESPONSE_TYPE, "source": "s", "model": "m"});
        let event = EventParser::default().parse_structured(body.to_string().as_bytes()).unwrap();
        assert_eq!(event.prediction, None);
    }
}

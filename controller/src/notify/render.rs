//! What a sink receives, rendered from a queued [`RolloutEvent`] (pure functions): a CDEvent (spec v0.4.1, service
//! events 0.2.0) carried by a CloudEvent 1.0 over HTTP in binary or structured content mode, or a Slack-style
//! incoming-webhook message (`text` plus Block Kit `blocks`). Both carry the analysis detail: per metric the canary
//! and baseline estimates, the effect, the confidence interval and the reason.

use serde_json::{Value, json};

use super::event::{RolloutEvent, Transition};

/// The CDEvents specification version the events follow.
pub const CDEVENTS_SPEC_VERSION: &str = "0.4.1";

/// CloudEvents HTTP content mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentMode {
    /// Attributes in `ce-` headers, the CDEvent as the body (`application/json`).
    #[default]
    Binary,
    /// The whole CloudEvent as the body (`application/cloudevents+json`).
    Structured,
}

impl ContentMode {
    /// Parses `binary` or `structured`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" | "binary" => Ok(ContentMode::Binary),
            "structured" => Ok(ContentMode::Structured),
            other => Err(format!("unknown CloudEvents content mode `{other}`: use `binary` or `structured`")),
        }
    }
}

/// One HTTP request to send.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpMessage {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The CloudEvents `source` of a rollout's events: its API path, a URI reference that names it uniquely.
pub fn source(event: &RolloutEvent) -> String {
    format!("/apis/rampart.dev/v1alpha1/namespaces/{}/modelrollouts/{}", event.namespace, event.name)
}

/// A package URL for the model version (`pkg:generic/<model>@<version>`), the CDEvents form of an artifact id.
pub fn artifact_id(event: &RolloutEvent) -> String {
    format!("pkg:generic/{}@{}", purl_escape(&event.model), purl_escape(&event.candidate_version))
}

fn purl_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The CDEvent (the CloudEvent's data).
pub fn cdevent(event: &RolloutEvent) -> Value {
    let source = source(event);
    json!({
        "context": {
            "version": CDEVENTS_SPEC_VERSION,
            "id": event.id,
            "source": source,
            "type": event.transition.cdevents_type(),
            "timestamp": event.time,
        },
        "subject": {
            "id": format!("{}/{}", event.namespace, event.service),
            "source": source,
            "type": "service",
            "content": {
                "environment": {"id": event.namespace, "source": source},
                "artifactId": artifact_id(event),
            },
        },
        "customDataContentType": "application/json",
        "customData": {"rampart": event},
    })
}

/// Percent-encodes a header value as the CloudEvents HTTP binding asks (space, `"`, `%` and anything outside
/// printable ASCII).
fn header_value(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The CloudEvent over HTTP.
pub fn cloudevent(event: &RolloutEvent, mode: ContentMode) -> HttpMessage {
    let data = cdevent(event);
    let source = source(event);
    let subject = format!("{}/{}", event.namespace, event.name);
    match mode {
        ContentMode::Binary => {
            let headers = [
                ("ce-specversion", "1.0"),
                ("ce-id", event.id.as_str()),
                ("ce-source", source.as_str()),
                ("ce-type", event.transition.cdevents_type()),
                ("ce-time", event.time.as_str()),
                ("ce-subject", subject.as_str()),
                ("content-type", "application/json"),
            ];
            HttpMessage {
                headers: headers.iter().map(|(k, v)| (k.to_string(), header_value(v))).collect(),
                body: serde_json::to_vec(&data).unwrap_or_default(),
            }
        }
        ContentMode::Structured => {
            let envelope = json!({
                "specversion": "1.0",
                "id": event.id,
                "source": source,
                "type": event.transition.cdevents_type(),
                "time": event.time,
                "subject": subject,
                "datacontenttype": "application/json",
                "data": data,
            });
            HttpMessage {
                headers: vec![("content-type".into(), "application/cloudevents+json".into())],
                body: serde_json::to_vec(&envelope).unwrap_or_default(),
            }
        }
    }
}

/// Escapes text for Slack's mrkdwn (`&`, `<`, `>`), so a metric name or message cannot inject links or mentions.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cut(text: &str, limit: usize) -> String {
    crate::status::truncate(text, limit)
}

/// The one-line summary, also the message's `text` (notifications and clients without blocks show it).
pub fn summary(event: &RolloutEvent) -> String {
    let what = format!("{} {} ({}/{})", event.model, event.candidate_version, event.namespace, event.name);
    match event.transition {
        Transition::Deployed => {
            format!("{what}: canary deployed, {}% of traffic", event.canary_weight.unwrap_or(0))
        }
        Transition::Upgraded => match &event.baseline_version {
            Some(baseline) => format!("{what}: promoted, replacing {baseline}"),
            None => format!("{what}: promoted"),
        },
        Transition::RolledBack => match &event.reason {
            Some(reason) => format!("{what}: rolled back: {reason}"),
            None => format!("{what}: rolled back"),
        },
    }
}

/// One metric's numbers on one line.
fn metric_line(metric: &rampart_api::v1alpha1::MetricStatus) -> String {
    let mut parts = vec![format!("{:?}", metric.verdict)];
    if let (Some(canary), Some(baseline)) = (&metric.canary, &metric.baseline) {
        parts.push(format!("canary {canary} vs baseline {baseline}"));
    }
    if let Some(effect) = &metric.effect {
        parts.push(format!("effect {effect}"));
    }
    if let Some(interval) = &metric.interval {
        parts.push(format!("interval {interval}"));
    }
    if let Some(p) = &metric.p_value {
        parts.push(format!("p {p}"));
    }
    if let Some(samples) = &metric.samples {
        parts.push(format!("samples {samples}"));
    }
    let mut line = parts.join(", ");
    if let Some(reason) = &metric.reason {
        line.push_str(&format!("\n{reason}"));
    }
    line
}

/// The Slack-style incoming-webhook message.
pub fn slack(event: &RolloutEvent) -> HttpMessage {
    let icon = match event.transition {
        Transition::Deployed => ":rocket:",
        Transition::Upgraded => ":white_check_mark:",
        Transition::RolledBack => ":rotating_light:",
    };
    let title = match event.transition {
        Transition::Deployed => "Canary deployed",
        Transition::Upgraded => "Promoted",
        Transition::RolledBack => "Rolled back",
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&format!("{title}: {} {}", event.model, event.candidate_version), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("{icon} {}", slack_escape(&summary(event))), 3000)}}),
    ];
    if let Some(analysis) = &event.analysis {
        let metrics = analysis.metrics.iter().chain(analysis.srm.iter()).take(20);
        for metric in metrics {
            let text = format!("*{}*: {}", slack_escape(&metric.name), slack_escape(&metric_line(metric)));
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, 3000)}}));
        }
    }
    let context = format!(
        "rollout `{}/{}` · phase {} · event `{}` · {}",
        slack_escape(&event.namespace),
        slack_escape(&event.name),
        event.phase,
        event.id,
        event.time
    );
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&context, 3000)}]}));
    let message = json!({"text": cut(&format!("{icon} {}", summary(event)), 3000), "blocks": blocks});
    HttpMessage {
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&message).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{AnalysisDetail, event_id};

    fn rolled_back() -> RolloutEvent {
        RolloutEvent {
            id: event_id("u", None, Transition::RolledBack),
            transition: Transition::RolledBack,
            time: "2026-01-01T00:01:00Z".into(),
            namespace: "ml".into(),
            name: "fraud-v2".into(),
            service: "fraud".into(),
            uid: "u".into(),
            model: "fraud".into(),
            candidate_version: "v2 beta".into(),
            artifact_uri: "s3://m/v2".into(),
            baseline_version: Some("v1".into()),
            phase: "RolledBack".into(),
            canary_weight: Some(0),
            step: Some(1),
            reason: Some("accuracy <worse> & more".into()),
            attempt: None,
            analysis: Some(AnalysisDetail {
                metrics: vec![rampart_api::v1alpha1::MetricStatus {
                    name: "accuracy".into(),
                    verdict: rampart_api::v1alpha1::Verdict::Fail,
                    canary: Some("0.85".into()),
                    baseline: Some("0.90".into()),
                    interval: Some("[-0.07, -0.03]".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn binary_mode_puts_the_attributes_in_headers_and_the_cdevent_in_the_body() {
        let event = rolled_back();
        let message = cloudevent(&event, ContentMode::Binary);
        let header = |name: &str| message.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("ce-id").as_deref(), Some(event.id.as_str()));
        assert_eq!(header("ce-type").as_deref(), Some("dev.cdevents.service.rolledback.0.2.0"));
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["context"]["id"], json!(event.id), "the CDEvent id is the CloudEvent id");
        assert_eq!(body["subject"]["content"]["artifactId"], json!("pkg:generic/fraud@v2%20beta"));
        assert_eq!(body["customData"]["rampart"]["analysis"]["metrics"][0]["interval"], json!("[-0.07, -0.03]"));
    }

    #[test]
    fn structured_mode_wraps_the_cdevent_in_the_envelope() {
        let message = cloudevent(&rolled_back(), ContentMode::Structured);
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["specversion"], json!("1.0"));
        assert_eq!(body["data"]["context"]["type"], body["type"]);
    }

    #[test]
    fn slack_text_escapes_what_a_tenant_wrote() {
        let body: Value = serde_json::from_slice(&slack(&rolled_back()).body).unwrap();
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("&lt;worse&gt; &amp; more"), "{section}");
        assert!(body["blocks"][2]["text"]["text"].as_str().unwrap().contains("canary 0.85 vs baseline 0.90"));
    }

    #[test]
    fn header_values_are_percent_encoded() {
        assert_eq!(header_value("a b\"%é"), "a%20b%22%25%C3%A9");
    }
}
